"""Zoo specs (see :func:`fpp_init.build_zoo`): a TOML file or dict -> the jobs, checked without torch.

Every class-set file is read and every model reference checked here (a checkpoint path must exist),
so a mistake anywhere in a spec is answered at once, before any job runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import constants as const
from ._io import read_toml
from ._validate import (
    check_file_name,
    check_int,
    check_model_reference,
    check_path,
    check_str,
    check_template,
    read_classnames,
)
from .config import FPPConfig, as_config
from .errors import ConfigError

__all__ = ["ZooJob", "ZooSettings", "load_zoo_spec"]


@dataclass(frozen=True)
class ZooJob:
    """One prompt of the zoo."""

    backbone_label: str  # the backbone's part of the file name
    model: str  # what pretrain_flat_prompt loads
    classes: str  # "agnostic" or the class set's name (its part of the file name)
    classnames: tuple[str, ...] | None  # None: class-agnostic
    seed: int
    template: str
    filename: str

    @property
    def num_classes(self) -> int:
        return len(self.classnames) if self.classnames is not None else -1


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _list(spec: Mapping[str, Any], key: str, default: list[Any] | None = None) -> list[Any]:
    value = spec.get(key, default)
    if not isinstance(value, list) or not value:
        raise ConfigError(f"zoo spec: {key!r} must be a non-empty list, got {value!r}", param=key)
    return value


def _entry_keys(item: Mapping[str, Any], where: str, known: tuple[str, ...]) -> None:
    unknown = sorted(str(k) for k in set(item) - set(known))
    if unknown:
        raise ConfigError(f"zoo spec: unknown key(s) {unknown} in {where}; known: {', '.join(known)}", param="spec")


def _backbone(item: Any, root: Path, i: int) -> tuple[str, str]:
    if isinstance(item, Mapping):
        _entry_keys(item, f"backbones[{i}]", ("model", "name"))
        model = check_str(item.get("model"), "zoo spec: backbones[].model")
        name = check_str(item.get("name", model), "zoo spec: backbones[].name")
    else:
        model = name = check_str(item, "zoo spec: backbones[]")
    is_path = not model.startswith((const.OPEN_CLIP_PREFIX, const.HF_PREFIX)) and (
        "." in Path(model).name or model.startswith((".", "/", "~"))
    )
    if is_path:  # relative to the spec; '~' expanded here (the model loaders take paths as given)
        model = os.path.expanduser(model)
        model = model if os.path.isabs(model) else str(root / model)
    label = Path(name).stem if is_path and name == item else name
    check_model_reference(model, f"zoo spec: backbones[{i}]")  # a missing checkpoint stops the spec, not job 7
    return _slug(label), model


def _class_set(item: Any, root: Path, i: int) -> tuple[str, tuple[str, ...] | None]:
    if item == "agnostic":
        return "agnostic", None
    if isinstance(item, Mapping):
        _entry_keys(item, f"classes[{i}]", ("file", "name"))
        file = check_str(item.get("file"), "zoo spec: classes[].file")
        name = check_str(item.get("name", Path(file).stem), "zoo spec: classes[].name")
    else:
        file = check_str(item, "zoo spec: classes[]")
        name = Path(file).stem
    path = Path(os.path.expanduser(file))
    names = read_classnames(path if path.is_absolute() else root / path, empty_hint=' (or list "agnostic" in classes)')
    return _slug(name), tuple(names)


@dataclass(frozen=True)
class ZooSettings:
    """How a spec's jobs are run (its top-level keys besides the job axes and ``config``)."""

    num_classes: int  # classes simulated by the class-agnostic jobs
    shard_above: int  # under torchrun: jobs with more classes run class-sharded on all ranks
    checkpoint_every: int  # steps between checkpoints of a running job


def load_zoo_spec(spec: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[list[ZooJob], FPPConfig, ZooSettings]:
    """The jobs, the shared :class:`FPPConfig` and the :class:`ZooSettings` of a spec."""
    if isinstance(spec, Mapping):
        data, root = dict(spec), Path.cwd()
    else:
        path = check_path(spec, "spec")
        data, root = read_toml(path, "zoo spec", "spec"), path.resolve().parent
    known = {"backbones", "classes", "seeds", "templates", "config", "num_classes", "shard_above", "checkpoint_every"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"zoo spec: unknown key(s) {unknown}; known: {', '.join(sorted(known))}", param=unknown[0])
    table = data.get("config", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"zoo spec: 'config' must be a table of FPPConfig fields, got {table!r}", param="config")
    config = as_config(dict(table))
    backbones = [_backbone(b, root, i) for i, b in enumerate(_list(data, "backbones"))]
    classes = [_class_set(c, root, i) for i, c in enumerate(_list(data, "classes"))]
    seeds = [check_int(s, "zoo spec: seeds[]", min=0, max=const.MAX_SEED) for s in _list(data, "seeds", [config.seed])]
    templates = [check_template(t, "zoo spec: templates[]") for t in _list(data, "templates", [const.DEFAULT_TEMPLATE])]
    settings = ZooSettings(
        num_classes=check_int(
            data.get("num_classes", const.DEFAULT_AGNOSTIC_CLASSES),
            "zoo spec: num_classes",
            min=1,
            max=const.MAX_NUM_CLASSES,
        ),
        shard_above=check_int(data.get("shard_above", 10**9), "zoo spec: shard_above", min=1),
        checkpoint_every=check_int(
            data.get("checkpoint_every", const.DEFAULT_CHECKPOINT_EVERY), "zoo spec: checkpoint_every", min=1
        ),
    )
    jobs = []
    for label, model in backbones:
        for tag, names in classes:
            for seed in seeds:
                for i, template in enumerate(templates):
                    suffix = f"_t{i}" if len(templates) > 1 else ""
                    filename = f"fpp_{label}_{tag}_seed{seed}{suffix}{const.SUFFIX}"
                    check_file_name(filename, "zoo spec: the file name", param="spec")  # long labels, before work
                    jobs.append(ZooJob(label, model, tag, names, seed, template, filename))
    dupes = sorted({j.filename for j in jobs if [k.filename for k in jobs].count(j.filename) > 1})
    if dupes:
        raise ConfigError(
            f"zoo spec: two jobs would write {dupes}; give backbones or class sets distinct names", param="spec"
        )
    return jobs, config, settings
