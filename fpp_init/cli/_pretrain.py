"""``fpp-init pretrain``: run FPP and write a prompt file."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from .. import constants as const
from .._io import check_writable_file
from .._launch import launcher
from .._validate import check_int, check_template
from ..config import FPPConfig
from ..errors import ConfigError
from ._common import (
    add_config_options,
    add_model_options,
    check_model_options,
    config_from_args,
    model_reference,
    read_classnames,
    say,
)


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
        "--template",
        default=const.DEFAULT_TEMPLATE,
        help=f"hand-written prompt (default {const.DEFAULT_TEMPLATE!r}; underscores read as spaces, as TPT's --ctx_init)",
    )
    p.add_argument("--out", required=True, help="output .safetensors path (checked before any work)")
    p.add_argument("--cache", action="store_true", help="reuse / store the result in the local prompt cache")
    p.add_argument(
        "--checkpoint", metavar="PATH", help="save the run's state here; run the same command again to resume"
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=const.DEFAULT_CHECKPOINT_EVERY,
        metavar="N",
        help=f"steps between checkpoints (default {const.DEFAULT_CHECKPOINT_EVERY})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary line (the JSON line stays)")
    add_config_options(p)
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> tuple[FPPConfig, list[str] | None]:
    """Every flag, file and path, checked before torch is imported: a mistake is answered at once."""
    cfg = config_from_args(args)
    names = None if args.class_agnostic else read_classnames(args.classnames, empty_hint=", or pass --class-agnostic")
    check_template(args.template, "--template")
    if args.num_classes is not None:
        if not args.class_agnostic:
            raise ConfigError("--num-classes is only for --class-agnostic; with --classnames it is their count")
        check_int(args.num_classes, "num_classes", min=1, max=const.MAX_NUM_CLASSES)
    check_int(args.checkpoint_every, "checkpoint_every", min=1)
    check_model_options(args)
    launch = launcher()  # a malformed launcher environment ends here, before any work
    if launch is None or launch.rank == 0:
        check_writable_file(args.out, "--out")
    if args.checkpoint is not None:
        check_writable_file(args.checkpoint, "--checkpoint")
    return cfg, names


def run(args: argparse.Namespace) -> int:
    cfg, names = _check(args)
    launch = launcher()
    writer = launch is None or launch.rank == 0
    from ..api import pretrain_flat_prompt
    from ..api._checkpoint import completed_steps

    resumed = completed_steps(args.checkpoint) if args.checkpoint is not None else None
    if resumed is not None and writer and not args.quiet:
        say(f"resuming from {args.checkpoint} after step {resumed} of {cfg.steps}")
    start = time.monotonic()

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
    if not args.quiet:
        say(_summary(prompt, cfg.steps, resumed, time.monotonic() - start, path))
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


def _summary(prompt: Any, steps: int, resumed: int | None, seconds: float, path: Any) -> str:
    """One human line beside the JSON one: what ran, the final losses, how long, where it went."""
    losses = prompt.final_losses
    shown = ", ".join(f"{k} {losses[k]:.4f}" for k in ("align", "flat", "loss", "cos") if k in losses)
    if prompt.cache_entry is not None:
        what = "taken from the cache"
    else:
        what = f"{steps} steps" + (f" (resumed after step {resumed})" if resumed else "")
    minutes, secs = divmod(seconds, 60)
    took = f"{int(minutes)} min {secs:.0f} s" if minutes else f"{secs:.1f} s"
    return f"done: {what} in {took}; final losses: {shown or 'none'}; wrote {path}"
