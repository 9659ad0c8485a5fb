"""``fpp-init sharpness``: compare the flatness of prompts (templates vs FPP files), optionally plot."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any

from .. import constants as const
from .._io import check_writable_file
from .._validate import check_int, check_str, check_template, is_prompt_path
from ..config import SharpnessConfig
from ..errors import ClassNameError
from ._common import (
    add_field_flags,
    add_model_options,
    check_model_options,
    check_sources,
    fields_from_args,
    model_reference,
    read_classnames,
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "sharpness",
        help="compare the flatness of prompts (loss increase under embedding noise) as a table or a plot",
        description=(
            "Data-free flatness of each PROMPT on a CLIP text tower: the loss increase 1 - cos between clean "
            "and noisy class features (lower is flatter; what FPP optimises) at several noise scales (the "
            "table's drop@ columns), and the alignment distance to the reference template. PROMPT is a "
            "prompt file (.safetensors) or a hand-written template in quotes."
        ),
    )
    p.add_argument("prompts", nargs="+", metavar="PROMPT", help="a .safetensors prompt file or a template text")
    add_model_options(p)
    p.add_argument(
        "--classnames", metavar="FILE", help="class names (one per line or JSON); default: those of the prompt files"
    )
    p.add_argument(
        "--template",
        default=None,
        help=f"template the alignment is measured to (default: each file's template, else {const.DEFAULT_TEMPLATE!r})",
    )
    p.add_argument(
        "--plot",
        metavar="PNG",
        help="write a figure: the loss increase 1 - cos (lower is flatter) vs noise scale, along 1-D and 2-D slices",
    )
    p.add_argument("--dpi", type=int, default=100, help="figure resolution (default 100)")
    p.add_argument("--title", default=None, help="figure title (default: the prompts' names and how to read it)")
    add_field_flags(p.add_argument_group("what is measured"), SharpnessConfig)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.set_defaults(func=run)


def format_table(results: list[Any]) -> str:
    """Plain-text table: one row per prompt, cosine drop per noise scale and alignment."""
    factors = results[0].factors
    head = ["prompt", "n_ctx", "align", *[f"drop@{f:g}x" for f in factors]]
    rows = [[r.label, str(r.n_ctx), f"{r.align:.4f}", *[f"{d:.4f}" for d in r.cos_drop]] for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths, strict=True)))]
    for row in rows:
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
    return "\n".join(lines)


def _check(args: argparse.Namespace) -> tuple[SharpnessConfig, list[bool]]:
    """Every flag, file and path, checked before torch is imported: a mistake is answered at once. Returns
    what to measure and, for each PROMPT, whether it names a prompt file (else it is a template)."""
    if args.plot:
        from ..plotting import require_matplotlib

        require_matplotlib()  # fail before the work, with the install hint
        check_writable_file(args.plot, "--plot")
        check_int(args.dpi, "dpi", min=10, max=2400)
        check_str(args.title, "title", allow_none=True)
    measure = SharpnessConfig().replace(**fields_from_args(args, SharpnessConfig), landscape=bool(args.plot))
    is_file = [is_prompt_path(text) for text in args.prompts]
    for text, file in zip(args.prompts, is_file, strict=True):
        if not file:
            check_template(text, "PROMPT")
    check_sources([text for text, file in zip(args.prompts, is_file, strict=True) if file])
    if args.template is not None:
        check_template(args.template, "--template")
    check_model_options(args)
    return measure, is_file


def run(args: argparse.Namespace) -> int:
    measure, is_file = _check(args)
    names = read_classnames(args.classnames) if args.classnames else None
    from ..api import sharpness
    from ..artifacts.sources import read_source
    from ..models import text_model

    items: list[tuple[str, Any]] = []
    for text, file in zip(args.prompts, is_file, strict=True):
        if file:
            items.append((os.path.basename(text).rsplit(".", 1)[0], read_source(text).prompt))
        else:
            items.append((f'"{text}"', text))
    if names is None:
        names = next((item.classnames for _, item in items if not isinstance(item, str) and item.classnames), None)
        if names is None:
            raise ClassNameError("pass --classnames FILE (no prompt file carries class names)")
    model = text_model(model_reference(args), device=args.device)
    options = dataclasses.asdict(measure)
    results = [
        sharpness(model, item, names, template=args.template, label=label, progress=not args.quiet, **options)
        for label, item in items
    ]
    if args.json:
        out = [r.to_dict() for r in results]
        for r in out:
            r.pop("landscape", None)
        print(json.dumps(out), file=sys.stdout)
    else:
        print(format_table(results), file=sys.stdout)
    if args.plot:
        from ..plotting import plot_sharpness

        plot_sharpness(results, title=args.title, path=args.plot, dpi=args.dpi)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
