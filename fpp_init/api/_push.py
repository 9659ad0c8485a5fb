"""``push_fpp_prompt``: upload prompt files plus a model card to a Hugging Face Hub repository."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .. import constants as const
from .._io import os_errors
from .._validate import check_bool, check_str
from .._version import __version__
from ..artifacts import build_hub_folder
from ..artifacts.export import PromptSource, collect_prompts, plan_file_names
from ..artifacts.hub import check_repo_id, fetch_model_card, require_online, upload_folder
from ..errors import ConfigError, OutputError, PromptFileError
from ._zoo import read_manifest, split_model

__all__ = ["push_fpp_prompt"]


def _expand_folders(
    sources: PromptSource | Sequence[PromptSource], filenames: Sequence[str] | None
) -> tuple[PromptSource | Sequence[PromptSource], Sequence[str] | None, list[Path]]:
    """A folder (``fpp-init zoo`` output, a Hub folder) stands for its prompt files, under their own names,
    and its ``manifest.json``."""
    if not (isinstance(sources, (str, os.PathLike)) and os.path.isdir(sources)):
        return sources, filenames, []  # (not a folder, or one the OS refuses to stat: read as a file)
    folder = Path(sources)
    with os_errors(PromptFileError, f"cannot read folder {str(folder)!r}"):
        files = sorted(folder / e.name for e in os.scandir(folder) if e.name.endswith(const.SUFFIX) and e.is_file())
    if not files:
        raise ConfigError(f"folder {str(folder)!r} holds no {const.SUFFIX} prompt files", param="sources")
    if filenames is not None:
        raise ConfigError("filenames cannot be given with a folder: its files keep their names", param="filenames")
    manifest = folder / "manifest.json"
    if not os.path.isfile(manifest):
        return files, [p.name for p in files], []
    _check_public(folder)
    return files, [p.name for p in files], [manifest]


def _check_public(folder: Path) -> None:
    """A manifest written before zoo recorded only public names may hold a local model path: not for upload."""
    manifest = folder / "manifest.json"
    try:
        entries = read_manifest(folder) or []
    except (ValueError, RecursionError, ConfigError):
        return  # not ours to judge: uploaded as it is
    for entry in entries:
        model = entry.get("model") if isinstance(entry, dict) else None
        if not isinstance(model, str):
            continue
        ref = split_model(model)[2]
        if os.path.isabs(ref) or ref.startswith("~"):
            raise ConfigError(
                f"{str(manifest)!r} records the local path {model!r} (written by an older fpp-init); run the same "
                "fpp-init zoo command again to rewrite it with the file's name and sha256, then push",
                param="sources",
            )


def push_fpp_prompt(
    sources: PromptSource | Sequence[PromptSource],
    repo_id: str,
    *,
    filenames: Sequence[str] | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    license: str | None = None,
) -> str:
    """Upload prompt file(s) plus a model card to the Hub model repository ``repo_id``; the commit URL.

    ``sources`` may also be a folder (``fpp-init zoo`` output): its prompt files keep their names and its
    ``manifest.json`` is uploaded too.

    Files are named by :func:`~fpp_init.artifacts.default_filename` unless ``filenames`` is given.
    The repository's existing card is read first and its files stay listed in the new card (a
    file of the same name is replaced). Uses :func:`huggingface_hub.create_repo`
    (``exist_ok=True``) and :func:`huggingface_hub.upload_folder`; ``revision`` is the branch to
    commit to (default: the main branch).
    """
    check_repo_id(repo_id)
    if private is not None:
        check_bool(private, "private")
    check_str(revision, "revision", allow_none=True)
    check_str(commit_message, "commit_message", allow_none=True)
    if token is not None and not isinstance(token, (str, bool)):
        raise ConfigError(f"token must be a string, True/False or None, got {type(token).__name__}", param="token")
    sources, filenames, extra = _expand_folders(sources, filenames)
    items = collect_prompts(sources)
    names = plan_file_names(items, filenames)  # every argument is checked before the network is touched
    require_online(f"push to {repo_id!r}")
    existing = fetch_model_card(repo_id, revision=revision, token=token)
    with os_errors(OutputError, "cannot make the upload folder in the temporary folder (TMPDIR)"):
        tmp_dir = tempfile.TemporaryDirectory(prefix="fpp-push-")
    with tmp_dir as tmp:
        folder = Path(tmp) / "upload"
        build_hub_folder(items, folder, filenames=names, repo_id=repo_id, license=license, existing_card=existing)
        for path in extra:
            with os_errors(OutputError, f"cannot copy {str(path)!r} into the upload folder"):
                shutil.copyfile(path, folder / path.name)
        message = commit_message or f"Upload {len(items)} FPP prompt file(s) with fpp-init {__version__}"
        return upload_folder(folder, repo_id, private=private, token=token, revision=revision, commit_message=message)
