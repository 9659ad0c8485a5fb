"""``fpp-init pretrain``: run FPP and write a prompt file."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .. import constants as const
from .._io import check_writable_file
from ._common import add_config_options, add_model_options, config_from_args, model_reference, read_classnames, say


def register(sub: Any) -> None:
    p = sub.add_parser(
        "pretrain",
        help="pretrain a flat prompt and save it as .safetensors",
        description=(
            "Pretrain FPP context vectors for a CLIP model and write a drop-in .safetensors file. Under torchrun "
            "the classes are sharded over the ranks and rank 0 writes the file."
        ),
    )
    add_model_options(p)
    cls = p.add_mutually_exclusive_group(required=True)
    cls.add_argument("--classnames", metavar="FILE", help="class names: one per line, or a JSON list (UTF-8)")
    cls.add_argument("--class-agnostic", action="store_true", help="random class tokens: one prompt for any class set")
    p.add_argument(
        "--num-classes", type=int, default=None, help="classes simulated with --class-agnostic (default 100)"
    )
    p.add_argument(
        "--template", default=const.DEFAULT_TEMPLATE, help=f"hand-written prompt (default {const.DEFAULT_TEMPLATE!r})"
    )
    p.add_argument("--out", required=True, help="output .safetensors path (checked before any work)")
    p.add_argument("--cache", action="store_true", help="reuse / store the result in the local prompt cache")
    p.add_argument(
        "--checkpoint", metavar="PATH", help="save the run's state here; run the same command again to resume"
    )
    p.add_argument(
        "--checkpoint-every", type=int, default=50, metavar="N", help="steps between checkpoints (default 50)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)  # bad flags fail before anything is loaded
    names = None if args.class_agnostic else read_classnames(args.classnames)
    from ..api._distributed import launcher

    launch = launcher()  # a malformed launcher environment ends here, before any work
    writer = launch is None or launch.rank == 0
    if writer:
        check_writable_file(args.out, "--out")
    from ..api import pretrain_flat_prompt

    prompt = pretrain_flat_prompt(
        model_reference(args),
        names,
        class_agnostic=args.class_agnostic,
        num_classes=args.num_classes,
        template=args.template,
        config=cfg,
        device=args.device,
        progress=not args.quiet,
        cache=bool(args.cache),
        checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every,
    )
    if not writer:
        return 0
    if prompt.cache_entry is not None:
        say(f"from cache (key {prompt.cache_entry.stem}, {prompt.cache_entry})")
    path = prompt.save(args.out)
    summary: dict[str, Any] = {
        "out": str(path),
        "n_ctx": prompt.n_ctx,
        "width": prompt.width,
        "backbone": prompt.backbone,
    }
    summary["from_cache"] = prompt.cache_entry is not None
    summary.update({k: round(v, 6) for k, v in prompt.final_losses.items()})
    print(json.dumps(summary))
    return 0
