"""Prompt files on the Hugging Face Hub: ``hf://`` references, downloads, file names, uploads.

Reference syntax::

    hf://OWNER/REPO/PATH/IN/REPO.safetensors              # a model repository, default branch
    hf://OWNER/REPO@REVISION/PATH/IN/REPO.safetensors     # a branch, tag or commit hash
    hf://datasets/OWNER/REPO/PATH.safetensors             # a dataset repository (spaces/ likewise)

A revision that contains ``/`` (``refs/pr/1``) cannot be written inside the reference; pass it
as ``revision=`` instead. Downloads go through :func:`huggingface_hub.hf_hub_download` only, so
its cache (``HF_HUB_CACHE`` / ``HF_HOME``), offline mode (``HF_HUB_OFFLINE=1``), token
(``HF_TOKEN`` or ``hf auth login``), endpoint (``HF_ENDPOINT``) and revision pinning all apply.
Before a download that may use the network, one short connection probe tells whether the
Hub is reachable; if it is not, only the local cache is used, with no retries (see
:mod:`fpp_init._hubenv`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import constants as const
from .._hubenv import check_repo_id, hub_endpoint, hub_offline, hub_reachable, quiet_hub
from .._validate import check_str
from .._version import __version__
from ..errors import ConfigError, HubError
from .fpp_prompt import FPPPrompt

logger = logging.getLogger(__name__)

__all__ = [
    "HubRef",
    "parse_hub_ref",
    "is_hub_ref",
    "check_repo_id",
    "download",
    "upload_folder",
    "fetch_model_card",
    "default_filename",
    "require_online",
]

_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_EXAMPLE = f"{const.HUB_SCHEME}OWNER/NAME[@REVISION]/FILE.safetensors"


@dataclass(frozen=True)
class HubRef:
    """A file in a Hub repository, optionally at a pinned revision."""

    repo_id: str
    filename: str
    revision: str | None = None
    repo_type: str = "model"

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        kind = "" if self.repo_type == "model" else f"{self.repo_type}s/"
        return f"{const.HUB_SCHEME}{kind}{self.repo_id}{rev}/{self.filename}"


def is_hub_ref(source: object) -> bool:
    """Whether ``source`` is a string starting with ``hf://``."""
    return isinstance(source, str) and source.startswith(const.HUB_SCHEME)


def parse_hub_ref(ref: str, *, revision: str | None = None) -> HubRef:
    """Parse ``hf://[datasets/|spaces/]OWNER/REPO[@REVISION]/PATH``; ``revision=`` may give (or must match) it."""
    if not is_hub_ref(ref):
        raise HubError(f"{ref!r} is not a Hub reference; expected {_EXAMPLE}")
    check_str(revision, "revision", allow_none=True)
    parts = ref[len(const.HUB_SCHEME) :].split("/")
    repo_type = "model"
    if parts and parts[0] in _REPO_TYPES:
        repo_type = _REPO_TYPES[parts.pop(0)]
    if len(parts) < 3 or not all(parts):
        raise HubError(
            f"{ref!r} has no file path; expected {_EXAMPLE} "
            "(e.g. hf://someone/fpp-prompts/fpp_vit-b-16_agnostic_seed0.safetensors)"
        )
    owner, name, filename = parts[0], parts[1], "/".join(parts[2:])
    ref_rev = None
    if "@" in name:
        name, ref_rev = name.split("@", 1)
        if not ref_rev:
            raise HubError(f"{ref!r}: empty revision after '@'")
    if "@" in filename:
        raise HubError(
            f"{ref!r}: '@' belongs right after the repository name: {const.HUB_SCHEME}OWNER/NAME@REVISION/FILE "
            "(a revision containing '/' must be passed as revision=)"
        )
    repo_id = check_repo_id(f"{owner}/{name}", f"the repository of {ref!r}")
    if ref_rev and revision and ref_rev != revision:
        raise HubError(f"{ref!r} pins revision {ref_rev!r} but revision={revision!r} was also given; pass only one")
    return HubRef(repo_id=repo_id, filename=filename, revision=ref_rev or revision, repo_type=repo_type)


def _env_cache_dir() -> str | None:
    """The HF cache named by the environment *now* (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return None


def download(
    ref: HubRef,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    missing_ok: bool = False,
) -> Path | None:
    """Fetch ``ref`` into the HF cache with :func:`huggingface_hub.hf_hub_download`; its local path.

    Offline (``local_files_only``, ``HF_HUB_OFFLINE=1``, or the endpoint unreachable) means
    cache only. Every failure is a :class:`~fpp_init.errors.HubError` that says what to do, except a
    missing repository or file with ``missing_ok=True``: then ``None``.
    """
    import huggingface_hub
    from huggingface_hub import constants as hf_constants
    from huggingface_hub.utils import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cache = os.fspath(cache_dir) if cache_dir is not None else _env_cache_dir()
    where = f"{ref} (cache {cache or hf_constants.HF_HUB_CACHE})"
    if local_files_only or hub_offline():
        state = "offline mode is on (HF_HUB_OFFLINE=1 or local_files_only / --offline)"
        offline = True
    elif not hub_reachable():
        state = f"the Hub ({hub_endpoint()}) cannot be reached within {const.HUB_PROBE_TIMEOUT:g} s (no network?)"
        offline = True
        logger.info("%s: using the local cache only", state)
    else:
        state, offline = "the Hub could not be reached", False
    try:
        with quiet_hub():
            path = huggingface_hub.hf_hub_download(
                ref.repo_id,
                ref.filename,
                repo_type=ref.repo_type,
                revision=ref.revision,
                cache_dir=cache,
                token=token,
                local_files_only=offline,
                library_name="fpp-init",
                library_version=__version__,
            )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise HubError(
            f"{where} is not in the local Hugging Face cache and {state}. Connect to the internet, or download "
            f"it on a connected machine with `hf download {ref.repo_id} {ref.filename}` into the same cache "
            "(HF_HUB_CACHE / HF_HOME), or pass a local .safetensors path"
        ) from None
    except GatedRepoError:
        raise HubError(f"{where}: the repository is gated; accept its terms on huggingface.co and log in") from None
    except RevisionNotFoundError:
        raise HubError(f"{where}: revision {ref.revision!r} not found in {ref.repo_id}") from None
    except RepositoryNotFoundError:
        if missing_ok:
            return None
        raise HubError(
            f"{where}: repository {ref.repo_id!r} not found, or private: check the name, or log in "
            "(HF_TOKEN or `hf auth login`)"
        ) from None
    except EntryNotFoundError:
        if missing_ok:
            return None
        raise HubError(
            f"{where}: no file {ref.filename!r} in {ref.repo_id}; check the path (it is case-sensitive)"
        ) from None
    except HfHubHTTPError as exc:
        raise HubError(f"{where}: the Hub answered with an error: {' '.join(str(exc).split())}") from None
    except (OSError, ValueError) as exc:  # invalid ids, unwritable cache, network errors
        raise HubError(f"{where}: could not download: {type(exc).__name__}: {' '.join(str(exc).split())}") from None
    return Path(path)


def fetch_model_card(repo_id: str, *, revision: str | None, token: str | bool | None) -> str | None:
    """The repository's current ``README.md``, or ``None`` when it has none (or the repo does not exist)."""
    path = download(HubRef(repo_id, "README.md", revision), token=token, missing_ok=True)
    return None if path is None else path.read_text(encoding="utf-8", errors="replace")


def require_online(action: str) -> None:
    """Raise :class:`HubError` at once (one short probe) when ``action`` cannot reach the Hub."""
    if hub_offline():
        raise HubError(f"cannot {action}: offline mode is on (HF_HUB_OFFLINE=1); unset it")
    if not hub_reachable():
        raise HubError(
            f"cannot {action}: the Hub ({hub_endpoint()}) cannot be reached within {const.HUB_PROBE_TIMEOUT:g} s (no network?)"
        )


def upload_folder(
    folder: Path,
    repo_id: str,
    *,
    private: bool | None,
    token: str | bool | None,
    revision: str | None,
    commit_message: str,
) -> str:
    """``create_repo(exist_ok=True)`` + ``upload_folder``; the commit URL. The caller checks
    :func:`require_online` first (before it spends work on the folder)."""
    import huggingface_hub

    try:
        with quiet_hub():
            extra: dict[str, Any] = {} if private is None else {"private": private}
            huggingface_hub.create_repo(repo_id, token=token, exist_ok=True, **extra)
            info: Any = huggingface_hub.upload_folder(
                repo_id=repo_id, folder_path=str(folder), revision=revision, token=token, commit_message=commit_message
            )
    except Exception as exc:
        raise HubError(
            f"upload to {repo_id!r} failed ({type(exc).__name__}: {' '.join(str(exc).split())}); check the "
            "connection, and that you are logged in with write access (HF_TOKEN or `hf auth login`)"
        ) from None
    return str(getattr(info, "commit_url", info))


def base_model_id(backbone: str | None) -> str | None:
    """The Hub id of the OpenAI CLIP checkpoint named ``backbone``, if it has one."""
    if backbone and backbone.startswith(const.HF_PREFIX):
        return backbone[len(const.HF_PREFIX) :]
    return const.OPENAI_HUB_IDS.get(backbone or "")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def default_filename(prompt: FPPPrompt, tag: str | None = None) -> str:
    """The conventional Hub file name ``fpp_<backbone>_<classes>_seed<k>.safetensors``.

    ``<classes>`` is ``agnostic`` for class-agnostic prompts, else ``tag`` (e.g. a data set
    name, ``dtd``) or ``<N>cls-<hash>`` of the class names. Example:
    ``fpp_vit-b-16_agnostic_seed0.safetensors``.
    """
    if not isinstance(prompt, FPPPrompt):
        raise ConfigError(f"default_filename needs an FPPPrompt, got {type(prompt).__name__}", param="prompt")
    check_str(tag, "tag", allow_none=True)
    if tag is not None:
        classes = _slug(tag)
    elif prompt.class_agnostic:
        classes = "agnostic"
    elif prompt.classnames:
        digest = hashlib.sha256(json.dumps(prompt.classnames).encode()).hexdigest()[:8]
        classes = f"{len(prompt.classnames)}cls-{digest}"
    else:
        classes = "ctx"
    seed = prompt.config.get("seed")
    tail = f"_seed{seed}" if isinstance(seed, int) and not isinstance(seed, bool) else ""
    return f"fpp_{_slug(prompt.backbone or 'unknown')}_{classes}{tail}{const.SUFFIX}"
