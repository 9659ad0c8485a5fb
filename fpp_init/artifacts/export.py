"""Exports of a prompt: the CoOp checkpoint layout and a Hub-ready folder with a model card.

* :func:`export_coop` writes ``{'state_dict': {'ctx': tensor}, 'epoch': int}`` (CPU tensors,
  plain containers), so TPT-family ``--load out.pth`` works unchanged and
  ``torch.load(out, weights_only=True)`` reads it.
* :func:`build_hub_folder` writes prompt files plus a ``README.md`` model card, ready for
  :func:`huggingface_hub.upload_folder` (see :func:`fpp_init.push_fpp_prompt`): the whole folder
  or nothing.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import torch

from .. import constants as const
from .._io import atomic_write_bytes, check_writable_dir, os_errors, remove_stale_temps
from .._validate import check_bool, check_file_name, check_int, check_path, check_str
from ..errors import ConfigError, OutputError
from .card import file_record, merge_records, model_card, records_in_card
from .fpp_prompt import FPPPrompt, current_ctx, prompt_bytes
from .hub import check_repo_id, default_filename
from .sources import as_prompt

__all__ = ["export_coop", "collect_prompts", "build_hub_folder", "plan_file_names", "PromptSource"]

PromptSource = Union[FPPPrompt, torch.Tensor, str, "os.PathLike[str]"]


def collect_prompts(sources: PromptSource | Sequence[PromptSource], *, allow_pickle: bool = False) -> list[FPPPrompt]:
    """Prompts from prompt objects, tensors, local paths or ``hf://`` references (all validated)."""
    if isinstance(sources, (FPPPrompt, torch.Tensor, str, os.PathLike)):
        sources = [sources]
    if not isinstance(sources, Sequence):
        raise ConfigError(f"expected a prompt, a path or a list of them, got {type(sources).__name__}", param="sources")
    items = list(sources)
    if not items:
        raise ConfigError("no prompts given; pass at least one FPPPrompt or prompt file", param="sources")
    return [as_prompt(item, what=f"sources[{i}]", allow_pickle=allow_pickle) for i, item in enumerate(items)]


def export_coop(source: PromptSource, out: str | os.PathLike[str], *, epoch: int | None = None) -> Path:
    """Write a prompt as a CoOp-style checkpoint ``{'state_dict': {'ctx': ctx}, 'epoch': epoch}``.

    The tensor is a fresh fp32 CPU tensor, so ``torch.load(out)`` needs no ``map_location`` and
    works with ``weights_only=True``. ``epoch`` defaults to the FPP step count (informational;
    TPT's ``--load`` reads only ``ctx``). Written atomically.
    """
    path = check_path(out, "out")
    (p,) = collect_prompts(source)
    if epoch is None:
        steps = p.config.get("steps")
        epoch = steps if isinstance(steps, int) and not isinstance(steps, bool) else 0
    check_int(epoch, "epoch", min=0)
    ctx = current_ctx(p).to(device="cpu", dtype=torch.float32).contiguous().clone()
    buf = io.BytesIO()
    torch.save({"state_dict": {const.CTX_KEY: ctx}, "epoch": int(epoch)}, buf)
    return atomic_write_bytes(path, buf.getvalue(), what="CoOp checkpoint")


def plan_file_names(items: list[FPPPrompt], filenames: Sequence[str] | None) -> list[str]:
    if filenames is None:
        names = [default_filename(p) for p in items]
    else:
        if isinstance(filenames, str) or not isinstance(filenames, Sequence):
            raise ConfigError("filenames must be a list of file names, one per prompt", param="filenames")
        names = list(filenames)
        if len(names) != len(items):
            raise ConfigError(
                f"{len(names)} file names for {len(items)} prompts; give one name per prompt", param="filenames"
            )
    for name in names:
        check_file_name(name, "file name", param="filenames", suffix=const.SUFFIX)
        if name.lower() == "readme.md":
            raise ConfigError("README.md is reserved for the model card", param="filenames")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(
            f"two prompts would be written as {dupes}; pass filenames= (CLI: --name) to tell them apart",
            param="filenames",
        )
    return names


def build_hub_folder(
    sources: PromptSource | Sequence[PromptSource],
    folder: str | os.PathLike[str],
    *,
    filenames: Sequence[str] | None = None,
    repo_id: str | None = None,
    license: str | None = None,
    overwrite: bool = False,
    existing_card: str | None = None,
) -> list[Path]:
    """Write the prompt files and a ``README.md`` model card into ``folder``; the written paths.

    ``folder`` must be absent or empty unless ``overwrite=True``. File names default to
    :func:`~fpp_init.artifacts.hub.default_filename`; duplicates are refused. The card lists
    the files of ``existing_card`` (an earlier card of the same repository) too. Everything is
    built in a temp folder beside ``folder`` first; an absent ``folder`` then appears whole in
    one rename, so a failure leaves nothing half-built.
    """
    if repo_id is not None:
        check_repo_id(repo_id)
    items = collect_prompts(sources)
    names = plan_file_names(items, filenames)
    check_str(license, "license", allow_none=True)
    check_bool(overwrite, "overwrite")
    root = check_writable_dir(check_path(folder, "folder"), "Hub folder")
    with os_errors(OutputError, f"cannot write Hub folder {str(root)!r}"):
        if os.path.isdir(root) and any(os.scandir(root)) and not overwrite:
            raise OutputError(
                f"folder {str(root)!r} is not empty; choose a new folder or pass overwrite=True (CLI: --force)"
            )
        if os.path.isdir(root):  # every target must be replaceable before anything is written
            for name in [*names, "README.md"]:
                found = os.lstat(root / name) if os.path.lexists(root / name) else None
                if found is not None and not (stat.S_ISREG(found.st_mode) or stat.S_ISLNK(found.st_mode)):
                    kind = "a folder" if stat.S_ISDIR(found.st_mode) else "not a regular file"
                    raise OutputError(
                        f"cannot write Hub folder {str(root)!r}: {name!r} there is {kind}; remove it or choose "
                        "another folder"
                    )
    records = merge_records(
        records_in_card(existing_card), [file_record(n, p) for n, p in zip(names, items, strict=True)]
    )
    blobs: dict[str, bytes] = {n: prompt_bytes(p) for n, p in zip(names, items, strict=True)}
    blobs["README.md"] = model_card(records, repo_id=repo_id, license=license).encode("utf-8")
    return _write_folder(root, blobs)


def _write_folder(root: Path, blobs: dict[str, bytes]) -> list[Path]:
    """Build every file in a staging folder, then make them appear: an absent ``root`` in one rename;
    in an existing ``root`` each file is renamed into place, and a failure half-way puts back what was
    there (the old files are kept as hard links until the last rename succeeded)."""
    existing = os.path.isdir(root)
    parent = root if existing else root.absolute().parent  # staging on the same file system, in a writable folder
    label = "fpp-init-staging" if existing else root.name[:100]
    staging = parent / f".{label}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    failed = f"cannot write Hub folder {str(root)!r}"
    with os_errors(OutputError, failed):
        parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(parent, label)
        os.mkdir(staging, 0o777)  # the kernel applies the umask, as for any new folder
    try:
        with os_errors(OutputError, failed):
            for name, data in blobs.items():
                atomic_write_bytes(staging / name, data, what="Hub folder file")
            if not existing:
                os.rename(staging, root)  # the whole folder appears at once
            else:
                _replace_all(root, staging, list(blobs))
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
    return [root / name for name in blobs]


def _replace_all(root: Path, staging: Path, names: list[str]) -> None:
    done: list[tuple[Path, Path | None]] = []  # (target, the old file kept in staging, or None)
    try:
        for name in names:
            target, old = root / name, None
            if os.path.lexists(target):
                old = staging / f"{name}.old"
                try:
                    os.link(target, old, follow_symlinks=False)
                except OSError:  # a file system without hard links: keep a copy
                    shutil.copy2(target, old, follow_symlinks=False)
            os.replace(staging / name, target)
            done.append((target, old))
    except BaseException:
        for target, old in reversed(done):
            with contextlib.suppress(OSError):
                if old is None:
                    os.unlink(target)
                else:
                    os.replace(old, target)
        raise
