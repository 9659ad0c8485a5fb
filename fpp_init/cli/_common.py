"""What the subcommands share: class-name files, model options, every FPPConfig field as a flag.

Nothing here imports torch: ``fpp-init --help`` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

from .. import constants as const
from .._io import path_stat, read_toml
from .._validate import check_device_name, check_model_reference, check_prompt_path, read_classnames
from ..config import FPPConfig, field_flag
from ..errors import ConfigError, ModelLoadError

__all__ = [
    "read_classnames",
    "add_model_options",
    "model_reference",
    "check_model_options",
    "check_sources",
    "add_config_options",
    "add_field_flags",
    "fields_from_args",
    "config_from_args",
    "flag",
    "say",
]


def flag(field: str) -> str:
    """The CLI flag of a Python option name: ``min_lr`` -> ``--min-lr``."""
    return "--" + field.replace("_", "-")


def say(message: str) -> None:
    """One line to stderr (what the user should know besides the JSON result)."""
    print(message, file=sys.stderr)


def add_model_options(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--arch",
        default=None,
        help=f"CLIP model: a clip name (default {const.DEFAULT_ARCH}, downloaded by clip), "
        f"'{const.OPEN_CLIP_PREFIX}ARCH/PRETRAINED' or '{const.HF_PREFIX}ORG/REPO'",
    )
    src.add_argument(
        "--weights",
        metavar="PATH",
        type=os.path.expanduser,  # '~' as the shell would (--weights=~/x.pt); the loaders take paths as given
        help="local CLIP checkpoint (OpenAI .pt or a state_dict) or model folder",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda if available)")


def model_reference(args: argparse.Namespace) -> str:
    return str(args.weights or args.arch or const.DEFAULT_ARCH)


def check_model_options(args: argparse.Namespace) -> None:
    """``--weights`` / ``--arch`` / ``--device``, checked before torch is imported (a mistake is answered
    at once, not after the seconds an import of torch takes)."""
    if args.weights is not None and path_stat(args.weights, what="--weights", error=ModelLoadError) is None:
        raise ModelLoadError(
            f"--weights {args.weights!r}: no such file or folder; pass a local CLIP checkpoint or model folder "
            f"(or --arch NAME, e.g. --arch {const.DEFAULT_ARCH})"
        )
    check_model_reference(model_reference(args), "weights" if args.weights is not None else "arch")
    if args.device is not None:
        check_device_name(args.device)


def check_sources(sources: list[str]) -> None:
    """Every local prompt file among ``sources`` exists and is a readable regular file (no torch needed);
    ``hf://`` references are resolved later."""
    for source in sources:
        if not source.startswith(const.HUB_SCHEME):
            check_prompt_path(source, "source")


def add_field_flags(group: Any, cls: type) -> None:
    """One flag per field of the config dataclass ``cls``, built from the field's one definition (its
    default and the help in its metadata, see :func:`fpp_init.config.option`). Defaults stay unset
    (``None``) so that a config file and the flags combine, flags winning."""
    for f in dataclasses.fields(cls):
        meta = f.metadata
        name = field_flag(f)
        if name is None:
            continue
        if "negative" in meta:  # a field that is on by default: the flag turns it off
            group.add_argument(
                name, dest=f.name, action="store_const", const=False, default=None, help=meta["negative"]
            )
            continue
        text = f"{meta['help']} (default {meta.get('default_text') or _shown(f.default)})"
        if "choices" in meta:
            group.add_argument(name, dest=f.name, choices=list(meta["choices"]), default=None, help=text)
        elif meta.get("parse") == "floats":
            group.add_argument(name, dest=f.name, type=_floats, default=None, metavar=meta.get("metavar"), help=text)
        else:
            kind = meta.get("type", type(f.default))
            group.add_argument(name, dest=f.name, type=kind, default=None, metavar=meta.get("metavar"), help=text)


def _shown(value: Any) -> str:
    return ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else str(value)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, got {text!r}") from None


def fields_from_args(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` whose flags were given."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}


def add_config_options(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`FPPConfig` field, plus ``--config FILE.toml``."""
    p.add_argument("--config", metavar="FILE.toml", help="FPPConfig fields from a TOML file (flags override them)")
    add_field_flags(p.add_argument_group("FPP hyperparameters (defaults: the paper's)"), FPPConfig)


def config_from_args(args: argparse.Namespace) -> FPPConfig:
    """``--config`` file fields, then every flag that was given."""
    base = FPPConfig()
    if args.config:
        table = read_toml(args.config, "config file", "config")
        if isinstance(table.get("fpp"), dict):  # the fields under [fpp]: nothing else may be in the file
            unused = sorted(k for k in table if k != "fpp")
            if unused:
                raise ConfigError(
                    f"config file {args.config!r}: {unused} outside the [fpp] table would not be used; move "
                    "them under [fpp], or drop the [fpp] header",
                    param="config",
                )
            table = table["fpp"]
        try:
            base = FPPConfig.from_dict(table, strict=True)
        except ConfigError as exc:  # name the file, and the flag the field also has
            raise ConfigError(f"config file {args.config!r}: {in_flags(str(exc), exc.param)}", param="config") from None
    return base.replace(**fields_from_args(args, FPPConfig))


def in_flags(message: str, param: str | None) -> str:
    """A :class:`ConfigError` message with the Python name replaced by the CLI flag."""
    if param and message.startswith(param):
        return flag(param) + message[len(param) :]
    return message
