"""What the subcommands share: class-name files, model options, every FPPConfig field as a flag.

Nothing here imports torch: ``fpp-init --help`` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from .. import constants as const
from .._io import path_stat, read_toml
from .._validate import check_device_name, check_model_reference, check_prompt_path, read_classnames
from ..config import FPPConfig
from ..errors import ConfigError, ModelLoadError

__all__ = [
    "read_classnames",
    "add_model_options",
    "model_reference",
    "check_model_options",
    "check_sources",
    "add_config_options",
    "config_from_args",
    "flag",
    "say",
]


# help per FPPConfig field (defaults are filled in from the dataclass)
_CONFIG_HELP = {
    "steps": "optimisation steps",
    "lr": "AdamW learning rate",
    "min_lr": "floor of the cosine learning-rate schedule",
    "weight_decay": "AdamW weight decay",
    "num_noise": "perturbed copies per step (K)",
    "ctx_noise": "noise std on the ctx positions",
    "cls_noise": "noise std on every other position",
    "flat_weight": "weight of the flatness loss (default: 1 + 15 / number of classes)",
    "init": "start point: random or predefined (the template's embeddings)",
    "init_std": "std of the random start",
    "seed": "seed of the random start and the noise",
    "chunk_classes": "classes per gradient-accumulation chunk (memory bound; same result)",
    "share_prefix": "compute SOS + ctx once per noise copy (exact; faster)",
    "autocast": "auto, off, fp16 or bf16 (auto: fp16 on CUDA for fp32 towers)",
    "threads": "CPU threads (default: OMP_NUM_THREADS, else the idle CPUs this process may use)",
    "dist_timeout": "under torchrun: seconds each rank waits for the others to join",
}


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
        "--weights", metavar="PATH", help="local CLIP checkpoint (OpenAI .pt or a state_dict) or model folder"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda if available)")


def model_reference(args: argparse.Namespace) -> str:
    return str(args.weights or args.arch or const.DEFAULT_ARCH)


def check_model_options(args: argparse.Namespace) -> None:
    """``--weights`` / ``--arch`` / ``--device``, checked before torch is imported (a mistake is answered
    at once, not after the seconds an import of torch takes)."""
    weights = None if args.weights is None else os.path.expanduser(args.weights)
    if weights is not None and path_stat(weights, what="--weights", error=ModelLoadError) is None:
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


def add_config_options(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`FPPConfig` field, plus ``--config FILE.toml``; defaults stay unset so
    that a config file and the flags combine (flags win)."""
    p.add_argument("--config", metavar="FILE.toml", help="FPPConfig fields from a TOML file (flags override them)")
    g = p.add_argument_group("FPP hyperparameters (defaults: the paper's)")
    for f in dataclasses.fields(FPPConfig):
        default = f.default
        text = _CONFIG_HELP[f.name]
        if "(default" not in text:  # flat_weight and threads say what their None default means
            text += f" (default {default})"
        if f.name == "share_prefix":
            g.add_argument(
                "--no-share-prefix", dest="share_prefix", action="store_const", const=False, default=None, help=text
            )
        elif f.name in ("init", "autocast"):
            choices = ["random", "predefined"] if f.name == "init" else ["auto", "off", "fp16", "bf16"]
            g.add_argument(flag(f.name), choices=choices, default=None, help=text)
        else:
            kind = float if isinstance(default, float) or f.name == "flat_weight" else int
            g.add_argument(flag(f.name), type=kind, default=None, metavar="N" if kind is int else "X", help=text)


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
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(FPPConfig) if getattr(args, f.name) is not None}
    return base.replace(**given)


def in_flags(message: str, param: str | None) -> str:
    """A :class:`ConfigError` message with the Python name replaced by the CLI flag."""
    if param and message.startswith(param):
        return flag(param) + message[len(param) :]
    return message
