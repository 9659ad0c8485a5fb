"""``build_zoo``: many prompts (backbones x class sets x seeds x templates) from one declarative spec.

A spec is a TOML file (or the same structure as a dict)::

    backbones = ["ViT-B/16", { name = "vit-l-14", model = "/models/ViT-L-14.pt" }, "open_clip:ViT-B-32/openai"]
    classes = ["agnostic", "classnames/dtd.json", { name = "pets", file = "classnames/pets.txt" }]
    seeds = [0, 1, 2]
    templates = ["a photo of a"]        # optional; default: the paper's
    num_classes = 100                   # class-agnostic jobs only; optional
    shard_above = 2000                  # under torchrun: jobs with more classes run on all ranks together
    checkpoint_every = 50               # steps between checkpoints of a running job

    [config]                            # FPPConfig fields for every job; optional
    steps = 1000

Relative paths are relative to the spec file. Each job writes ``fpp_<backbone>_<classes>_seed<k>.safetensors``
(plus ``_t<i>`` for the i-th template when there are several) into the output folder. A job whose file
already holds the prompt it would make is skipped; an interrupted job resumes from its checkpoint in
``<out>/.checkpoints``. Under ``torchrun`` the jobs are dealt out to the ranks (one job per rank at a
time); jobs with more than ``shard_above`` classes run first, on all ranks together, class-sharded.
Finally rank 0 writes ``manifest.json`` (file, backbone, classes, seed, template, fingerprint, final
losses, sha256 per prompt) and a ``README.md`` model card: the folder is ready for ``fpp-init push``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import constants as const
from .._io import atomic_write_bytes, check_writable_dir, path_stat, read_classnames, read_regular_file, read_toml
from .._validate import check_bool, check_classnames, check_file_name, check_int, check_path, check_str, check_template
from ..artifacts import FPPPrompt, read_prompt_file
from ..artifacts.card import file_record, model_card
from ..artifacts.hub import check_repo_id
from ..config import FPPConfig, as_config
from ..errors import ConfigError, FPPError, FPPWarning, ModelLoadError
from . import _distributed
from .pretrain import pretrain_flat_prompt

logger = logging.getLogger(__name__)

__all__ = ["ZooJob", "load_zoo_spec", "build_zoo"]

_MAX_MANIFEST = 64 * 2**20


@dataclass(frozen=True)
class ZooJob:
    """One prompt of the zoo."""

    backbone: str  # label used in the file name
    model: str  # what pretrain_flat_prompt loads
    classes: str  # label: "agnostic" or the class set's name
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
    if is_path and path_stat(model, what="CLIP checkpoint", error=ModelLoadError) is None:
        raise ModelLoadError(f"zoo spec: backbones[{i}]: CLIP checkpoint not found: {model!r}; check the path")
    label = Path(name).stem if is_path and name == item else name
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
    names = check_classnames(read_classnames(str(path if path.is_absolute() else root / path)), f"class set {name!r}")
    return _slug(name), tuple(names)


def load_zoo_spec(spec: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[list[ZooJob], FPPConfig, dict[str, Any]]:
    """The jobs, the shared :class:`FPPConfig` and the options (``num_classes``, ``shard_above``,
    ``checkpoint_every``) of a spec."""
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
    options = {
        "num_classes": check_int(
            data.get("num_classes", const.DEFAULT_AGNOSTIC_CLASSES),
            "zoo spec: num_classes",
            min=1,
            max=const.MAX_NUM_CLASSES,
        ),
        "shard_above": check_int(data.get("shard_above", 10**9), "zoo spec: shard_above", min=1),
        "checkpoint_every": check_int(data.get("checkpoint_every", 50), "zoo spec: checkpoint_every", min=1),
    }
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
    return jobs, config, options


def _recorded_digests(folder: Path) -> dict[str, str]:
    """``{file: sha256}`` from the folder's ``manifest.json`` (written by an earlier run), or ``{}``."""
    path = folder / "manifest.json"
    try:
        if path_stat(path, what="zoo manifest", error=ConfigError) is None:
            return {}
        entries = json.loads(read_regular_file(path, limit=_MAX_MANIFEST, what="zoo manifest", error=ConfigError))
        if not isinstance(entries, list):
            raise ValueError("not a list")
        return {
            e["file"]: e["sha256"]
            for e in entries
            if isinstance(e, dict) and isinstance(e.get("file"), str) and isinstance(e.get("sha256"), str)
        }
    except (ValueError, RecursionError, ConfigError) as exc:
        warnings.warn(
            f"zoo: {str(path)!r} cannot be read ({' '.join(str(exc).split())[:200]}); the finished files are "
            "checked by their metadata only, and the manifest is written again at the end",
            FPPWarning,
            stacklevel=3,
        )
        return {}


def _finished(
    path: Path, job: ZooJob, config: FPPConfig, num_classes: int, recorded: dict[str, str] | None = None
) -> FPPPrompt | None:
    """The prompt already in ``path`` if it is this job's result (same classes, seed, template, config)
    and, where ``recorded`` (the earlier manifest) has the file's sha256, the very bytes it recorded."""
    if not os.path.isfile(path):
        return None
    try:
        found = read_prompt_file(path)
        data = read_regular_file(path, limit=const.MAX_PROMPT_FILE_BYTES, what="prompt file")
    except FPPError:
        return None
    prompt = found.prompt
    same_classes = prompt.class_agnostic if job.classnames is None else prompt.classnames == list(job.classnames)
    count = num_classes if job.classnames is None else len(job.classnames)
    ok = same_classes and prompt.num_classes == count and prompt.template == job.template
    if not (ok and config.replace(seed=job.seed).made(prompt.config, count)):
        return None
    want = (recorded or {}).get(job.filename)
    if want is not None and hashlib.sha256(data).hexdigest() != want:
        warnings.warn(
            f"zoo: {job.filename} does not match the sha256 manifest.json records for it (changed since it was "
            "built); building it again",
            FPPWarning,
            stacklevel=3,
        )
        return None
    return prompt


def _run_job(
    job: ZooJob, out: Path, config: FPPConfig, options: dict[str, Any], distributed: bool, progress: bool
) -> FPPPrompt:
    checkpoints = out / ".checkpoints"
    prompt = pretrain_flat_prompt(
        job.model,
        None if job.classnames is None else list(job.classnames),
        class_agnostic=job.classnames is None,
        num_classes=options["num_classes"] if job.classnames is None else None,
        template=job.template,
        config=config.replace(seed=job.seed),
        progress=progress,
        checkpoint=checkpoints / (job.filename + ".ckpt"),
        checkpoint_every=options["checkpoint_every"],
        distributed=distributed,
    )
    return prompt


def build_zoo(
    spec: str | os.PathLike[str] | Mapping[str, Any],
    out: str | os.PathLike[str],
    *,
    progress: bool = True,
    repo_id: str | None = None,
) -> list[dict[str, Any]]:
    """Build every prompt of ``spec`` into the folder ``out`` (see the module docstring); the manifest entries."""
    if repo_id is not None:
        check_repo_id(repo_id)
    check_bool(progress, "progress")
    jobs, config, options = load_zoo_spec(spec)
    folder = check_writable_dir(check_path(out, "out"), "zoo output folder")
    device = _distributed.local_device() or torch.device("cpu")
    with _distributed.session(None, device, config.dist_timeout) as group:
        rank, world = (0, 1) if group is None else (group.rank, group.world)
        big = [j for j in jobs if j.num_classes > options["shard_above"]] if group is not None else []
        small = [j for j in jobs if j not in big]
        recorded = _recorded_digests(folder)
        for job in big + small[rank::world]:
            path = folder / job.filename
            if _finished(path, job, config, options["num_classes"], recorded) is not None:
                logger.info("zoo: %s is done; skipped", job.filename)
                continue
            logger.info("zoo: building %s", job.filename)
            prompt = _run_job(job, folder, config, options, distributed=job in big, progress=progress and rank == 0)
            if rank == 0 or job not in big:
                prompt.save(path)
        if group is not None:
            group.broadcast(None)  # a barrier: every rank's jobs are written
        entries = _manifest(folder, jobs, config, options["num_classes"]) if rank == 0 else []
        if rank == 0:
            _write_index(folder, entries, repo_id)
    return [{k: v for k, v in e.items() if k != "record"} for e in entries]


def _manifest(folder: Path, jobs: list[ZooJob], config: FPPConfig, num_classes: int) -> list[dict[str, Any]]:
    entries = []
    for job in jobs:
        path = folder / job.filename
        prompt = _finished(path, job, config, num_classes)
        if prompt is None:
            raise FPPError(f"zoo: {job.filename} was not built; run the same command again")
        entries.append(
            {
                "file": job.filename,
                "backbone": prompt.backbone,
                "model": job.model,
                "classes": job.classes,
                "num_classes": prompt.num_classes,
                "seed": job.seed,
                "template": job.template,
                "fingerprint": prompt.fingerprint,
                "final_losses": prompt.final_losses,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "record": file_record(job.filename, prompt),
            }
        )
    return entries


def _write_index(folder: Path, entries: list[dict[str, Any]], repo_id: str | None) -> None:
    manifest = [{k: v for k, v in e.items() if k != "record"} for e in entries]
    atomic_write_bytes(folder / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode(), what="manifest")
    card = model_card([e["record"] for e in entries], repo_id=repo_id)
    atomic_write_bytes(folder / "README.md", card.encode("utf-8"), what="model card")
