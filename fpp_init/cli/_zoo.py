"""``fpp-init zoo``: build many prompts from a declarative TOML spec (see :func:`fpp_init.build_zoo`)."""

from __future__ import annotations

import argparse
import json
import warnings
from typing import Any

from .._hubenv import check_repo_id
from .._io import check_writable_dir
from .._zoospec import load_zoo_spec
from ..errors import FPPWarning


def register(sub: Any) -> None:
    p = sub.add_parser(
        "zoo",
        help="build a set of prompts (backbones x class sets x seeds) from a TOML spec, ready to push",
        description=(
            "Build every prompt a TOML spec asks for (backbones x class sets x seeds x templates) into DIR, "
            "skipping finished ones and resuming interrupted ones; write manifest.json and a README.md model "
            "card. Under torchrun the jobs are dealt out to the ranks. Then: fpp-init push DIR --repo-id O/R."
        ),
    )
    p.add_argument("spec", metavar="SPEC.toml", help="the spec (see the README's 'Prompt zoo' section)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if absent)")
    p.add_argument("--repo-id", default=None, metavar="OWNER/NAME", help="repository shown in the card's usage snippet")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.repo_id is not None:
        check_repo_id(args.repo_id, "--repo-id")
    with warnings.catch_warnings():  # errors only: build_zoo loads the spec again and warns once
        warnings.simplefilter("ignore", FPPWarning)
        load_zoo_spec(args.spec)  # the spec, its class files and model paths, before torch is imported
    check_writable_dir(args.out, "--out")
    from ..api import build_zoo

    entries = build_zoo(args.spec, args.out, progress=not args.quiet, repo_id=args.repo_id)
    if entries:
        print(json.dumps({"out": args.out, "files": [e["file"] for e in entries]}))
    return 0
