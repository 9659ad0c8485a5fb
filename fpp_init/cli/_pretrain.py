"""``fpp-init pretrain``: run FPP and write a prompt file."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .. import constants as C
from ._common import read_classnames


def register(sub: Any) -> None:
    p = sub.add_parser(
        "pretrain",
        help="pretrain a flat prompt and save it as .safetensors",
        description="Pretrain FPP context vectors for a CLIP model and write a drop-in .safetensors file.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--arch", default=None, help=f"CLIP model name, downloaded by clip (default {C.DEFAULT_ARCH})")
    src.add_argument("--weights", metavar="PATH", help="local CLIP checkpoint (OpenAI .pt or a state_dict)")
    cls = p.add_mutually_exclusive_group(required=True)
    cls.add_argument("--classnames", metavar="FILE", help="class names: one per line, or a JSON list")
    cls.add_argument("--class-agnostic", action="store_true", help="random class tokens: one prompt for any class set")
    p.add_argument(
        "--num-classes", type=int, default=None, help="classes simulated with --class-agnostic (default 100)"
    )
    p.add_argument(
        "--template", default=C.DEFAULT_TEMPLATE, help=f"hand-written prompt (default {C.DEFAULT_TEMPLATE!r})"
    )
    p.add_argument("--steps", type=int, default=C.DEFAULT_STEPS, help=f"optimisation steps (default {C.DEFAULT_STEPS})")
    p.add_argument("--seed", type=int, default=0, help="seed of the random start and noise (default 0)")
    p.add_argument("--init", choices=["random", "predefined"], default="random", help="start point (default random)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda if available)")
    p.add_argument("--cache", action="store_true", help="reuse / store the result in the local prompt cache")
    p.add_argument("--out", required=True, help="output .safetensors path")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._pretrain import pretrain_flat_prompt

    model = args.weights or args.arch or C.DEFAULT_ARCH
    names = None if args.class_agnostic else read_classnames(args.classnames)
    prompt = pretrain_flat_prompt(
        model,
        names,
        class_agnostic=args.class_agnostic,
        num_classes=args.num_classes,
        template=args.template,
        device=args.device,
        progress=not args.quiet,
        cache=bool(args.cache),
        steps=args.steps,
        seed=args.seed,
        init=args.init,
    )
    path = prompt.save(args.out)
    summary = {"out": str(path), "n_ctx": prompt.n_ctx, "width": prompt.width, "backbone": prompt.backbone}
    summary.update({k: round(v, 6) for k, v in prompt.final_losses.items()})
    print(json.dumps(summary), file=sys.stdout)
    return 0
