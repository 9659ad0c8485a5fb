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
Finally rank 0 writes ``manifest.json`` (file, backbone, model, classes, seed, template, fingerprint,
final losses, sha256 per prompt) and a ``README.md`` model card: the folder is ready for ``fpp-init push``.
Nothing local goes into them: a model given as a path is recorded by its file name and sha256
(:func:`public_model`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .. import constants as const
from .._io import atomic_write_bytes, check_writable_dir, path_stat, read_regular_file
from .._validate import ReadNames, check_bool, check_path
from .._zoospec import ZooJob, ZooSettings, load_zoo_spec
from ..artifacts import FPPPrompt, read_prompt_file
from ..artifacts.card import file_record, model_card
from ..artifacts.hub import check_repo_id
from ..config import FPPConfig
from ..errors import ConfigError, FPPError, FPPWarning
from . import _distributed
from ._pretrain import pretrain_flat_prompt

logger = logging.getLogger(__name__)

__all__ = ["ZooJob", "load_zoo_spec", "build_zoo", "public_model"]

_MAX_MANIFEST = 64 * 2**20


def read_manifest(folder: Path) -> list[Any] | None:
    """The entries of the folder's ``manifest.json``, ``None`` when it has none; ``ConfigError``,
    ``ValueError`` or ``RecursionError`` when that file is not a readable JSON list."""
    path = folder / "manifest.json"
    if path_stat(path, what="zoo manifest", error=ConfigError) is None:
        return None
    entries = json.loads(read_regular_file(path, limit=_MAX_MANIFEST, what="zoo manifest", error=ConfigError))
    if not isinstance(entries, list):
        raise ValueError("not a list")
    return entries


def split_model(model: str) -> tuple[str, str, str]:
    """``(prefix, arch, ref)`` of a model reference: ``open_clip:`` / ``hf:`` / ``""``, the OpenCLIP
    architecture (else ``""``) and the rest (OpenCLIP's pretrained tag or checkpoint, a Hub id, a name or
    a path)."""
    for prefix in (const.OPEN_CLIP_PREFIX, const.HF_PREFIX):
        if model.startswith(prefix):
            rest = model[len(prefix) :]
            if prefix == const.OPEN_CLIP_PREFIX and not rest.startswith("hf-hub:"):
                arch, _, pretrained = rest.partition("/")
                return prefix, arch, pretrained
            return prefix, "", rest
    return "", "", model


def _recorded_digests(folder: Path) -> dict[str, str]:
    """``{file: sha256}`` from the folder's ``manifest.json`` (written by an earlier run), or ``{}``."""
    path = folder / "manifest.json"
    try:
        entries = read_manifest(folder) or []
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
    if not (ok and config.replace(seed=job.seed).matches_recorded(prompt.config, count)):
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
    job: ZooJob, out: Path, config: FPPConfig, settings: ZooSettings, distributed: bool, progress: bool
) -> FPPPrompt:
    checkpoints = out / ".checkpoints"
    prompt = pretrain_flat_prompt(
        job.model,
        None if job.classnames is None else ReadNames(job.classnames),  # checked when the spec was read
        class_agnostic=job.classnames is None,
        num_classes=settings.num_classes if job.classnames is None else None,
        template=job.template,
        config=config.replace(seed=job.seed),
        progress=progress,
        checkpoint=checkpoints / (job.filename + ".ckpt"),
        checkpoint_every=settings.checkpoint_every,
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
    jobs, config, settings = load_zoo_spec(spec)
    folder = check_writable_dir(check_path(out, "out"), "zoo output folder")
    device = _distributed.local_device() or torch.device("cpu")
    with _distributed.session(None, device, config.dist_timeout) as group:
        rank, world = (0, 1) if group is None else (group.rank, group.world)
        big = [j for j in jobs if j.num_classes > settings.shard_above] if group is not None else []
        small = [j for j in jobs if j not in big]
        recorded = _recorded_digests(folder)
        for job in big + small[rank::world]:
            path = folder / job.filename
            if _finished(path, job, config, settings.num_classes, recorded) is not None:
                logger.info("zoo: %s is done; skipped", job.filename)
                continue
            logger.info("zoo: building %s", job.filename)
            prompt = _run_job(job, folder, config, settings, distributed=job in big, progress=progress and rank == 0)
            if rank == 0 or job not in big:
                prompt.save(path)
        if group is not None:
            group.broadcast(None)  # a barrier: every rank's jobs are written
        entries = _manifest(folder, jobs, config, settings.num_classes) if rank == 0 else []
        if rank == 0:
            _write_index(folder, entries, repo_id)
    return [{k: v for k, v in e.items() if k != "record"} for e in entries]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _folder_sha256(folder: Path) -> str:
    """sha256 over the folder's files: each relative path and its content's sha256, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{_sha256(path)}\n".encode())
    return digest.hexdigest()


def public_model(model: str) -> dict[str, str]:
    """What a published file may say about a job's model: its public name, or for a local checkpoint its
    file name and sha256 (a folder: its name and the sha256 of its files), never a local path (which
    names users, hosts and mounts)."""
    prefix, arch, ref = split_model(model)
    if prefix == const.OPEN_CLIP_PREFIX:
        local = Path(ref).expanduser()
        if not arch or not local.is_file():  # (no arch: open_clip:hf-hub:ORG/REPO)
            return {"model": model}
        return {"model": f"{prefix}{arch}/{local.name}", "model_sha256": _sha256(local)}
    local = Path(ref).expanduser()
    if local.is_dir():
        return {"model": f"{const.HF_PREFIX}{local.resolve().name}", "model_sha256": _folder_sha256(local)}
    if local.is_file():
        return {"model": local.name, "model_sha256": _sha256(local)}
    return {"model": model}  # a public name: a clip name, open_clip:ARCH/TAG, hf:ORG/REPO


def _manifest(folder: Path, jobs: list[ZooJob], config: FPPConfig, num_classes: int) -> list[dict[str, Any]]:
    entries = []
    models: dict[str, dict[str, str]] = {}  # each checkpoint hashed once
    for job in jobs:
        path = folder / job.filename
        prompt = _finished(path, job, config, num_classes)
        if prompt is None:
            raise FPPError(f"zoo: {job.filename} was not built; run the same command again")
        if job.model not in models:
            models[job.model] = public_model(job.model)
        entries.append(
            {
                "file": job.filename,
                "backbone": prompt.backbone,
                **models[job.model],
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
