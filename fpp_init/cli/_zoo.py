"""``fpp-init zoo``: build many prompts from a declarative spec (see :mod:`fpp_init.zoo`)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("zoo", help="build a set of prompts (backbones x class sets x seeds) from a TOML spec")
    p.add_argument("spec", metavar="SPEC.toml")
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:  # pragma: no cover - filled in below
    raise NotImplementedError
