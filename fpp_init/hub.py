"""Prompt files on the Hugging Face Hub: ``hf://`` references, download, file names, push.

Reference syntax (model repositories only)::

    hf://OWNER/REPO/PATH/IN/REPO.safetensors          # default branch (main)
    hf://OWNER/REPO@REVISION/PATH/IN/REPO.safetensors # a branch, tag or commit hash

A revision that contains ``/`` (``refs/pr/1``) cannot be written inside the
reference; pass it as ``revision=`` instead. ``load_fpp_prompt("OWNER/REPO",
"PATH.safetensors")`` is the same as the first form.

Downloads go through :func:`huggingface_hub.hf_hub_download` only, so its cache
(``HF_HUB_CACHE`` / ``HF_HOME``), offline mode (``HF_HUB_OFFLINE=1``), token
(``HF_TOKEN`` or ``hf auth login``) and revision pinning all apply.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import ConfigError, HubError
from .prompt import FPPPrompt

__all__ = ["HubRef", "parse_hub_ref", "is_hub_ref", "download", "default_filename", "push_fpp_prompt"]

HUB_SCHEME = "hf://"
_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class HubRef:
    """A file in a Hub model repository, optionally at a pinned revision."""

    repo_id: str
    filename: str
    revision: str | None = None

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"{HUB_SCHEME}{self.repo_id}{rev}/{self.filename}"


def is_hub_ref(source: object) -> bool:
    """Whether ``source`` is a string starting with ``hf://``."""
    return isinstance(source, str) and source.startswith(HUB_SCHEME)


def _check_repo_id(repo_id: str, shown: str, *, in_ref: bool = True) -> None:
    parts = repo_id.split("/")
    if len(parts) == 2 and all(_REPO_PART.match(p) for p in parts):
        return
    rule = "OWNER/NAME (letters, digits, '-', '_', '.')"
    if in_ref:
        raise HubError(
            f"{shown!r}: the repository must be {rule}, got {repo_id!r}; "
            f"expected {HUB_SCHEME}OWNER/NAME[@REVISION]/FILE.safetensors"
        )
    raise HubError(f"repository id {repo_id!r} must be {rule}, e.g. someone/fpp-prompts")


def parse_hub_ref(ref: str, *, revision: str | None = None) -> HubRef:
    """Parse ``hf://OWNER/REPO[@REVISION]/PATH``; ``revision=`` may give (or must match) the revision."""
    if not is_hub_ref(ref):
        raise HubError(f"{ref!r} is not a Hub reference; expected {HUB_SCHEME}OWNER/NAME[@REVISION]/FILE.safetensors")
    body = ref[len(HUB_SCHEME) :]
    parts = body.split("/")
    if len(parts) < 3 or not all(parts):
        raise HubError(
            f"{ref!r} has no file path; expected {HUB_SCHEME}OWNER/NAME[@REVISION]/FILE.safetensors "
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
            f"{ref!r}: '@' belongs right after the repository name: {HUB_SCHEME}OWNER/NAME@REVISION/FILE "
            "(a revision containing '/' must be passed as revision=)"
        )
    repo_id = f"{owner}/{name}"
    _check_repo_id(repo_id, ref)
    if ref_rev and revision and ref_rev != revision:
        raise HubError(f"{ref!r} pins revision {ref_rev!r} but revision={revision!r} was also given; pass only one")
    return HubRef(repo_id=repo_id, filename=filename, revision=ref_rev or revision)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


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
) -> Path:
    """Fetch ``ref`` into the HF cache with :func:`huggingface_hub.hf_hub_download`; its local path.

    ``HF_HUB_OFFLINE=1`` (read at call time too) means cache only. Every failure is a
    :class:`~fpp_init.HubError` that says what to do.
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

    offline = local_files_only or _env_true("HF_HUB_OFFLINE") or bool(getattr(hf_constants, "HF_HUB_OFFLINE", False))
    cache = os.fspath(cache_dir) if cache_dir is not None else _env_cache_dir()
    where = f"{ref} (cache {cache or hf_constants.HF_HUB_CACHE})"
    try:
        path = huggingface_hub.hf_hub_download(
            ref.repo_id,
            ref.filename,
            revision=ref.revision,
            cache_dir=cache,
            token=token,
            local_files_only=offline,
            library_name="fpp-init",
            library_version=__version__,
        )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        state = (
            "offline mode is on (HF_HUB_OFFLINE=1 or local_files_only)" if offline else "the Hub could not be reached"
        )
        raise HubError(
            f"{where} is not in the local Hugging Face cache and {state}. Connect to the internet "
            f"(and set HF_HUB_OFFLINE=0), or pre-download it on a connected machine with "
            f"`hf download {ref.repo_id} {ref.filename}` (older huggingface_hub: `huggingface-cli download`) "
            "into the same cache (HF_HUB_CACHE / HF_HOME), "
            "or pass a local .safetensors path"
        ) from exc
    except GatedRepoError as exc:
        raise HubError(f"{where}: the repository is gated; accept its terms on huggingface.co and log in") from exc
    except RevisionNotFoundError as exc:
        raise HubError(f"{where}: revision {ref.revision!r} not found in {ref.repo_id}") from exc
    except RepositoryNotFoundError as exc:
        raise HubError(
            f"{where}: repository {ref.repo_id!r} not found, or private: check the name, or log in "
            "(HF_TOKEN or `hf auth login`)"
        ) from exc
    except EntryNotFoundError as exc:
        raise HubError(
            f"{where}: no file {ref.filename!r} in {ref.repo_id}; check the path (it is case-sensitive)"
        ) from exc
    except HfHubHTTPError as exc:
        raise HubError(f"{where}: the Hub answered with an error: {exc}") from exc
    except (OSError, ValueError) as exc:  # invalid ids, unwritable cache, network errors
        raise HubError(f"{where}: could not download: {type(exc).__name__}: {exc}") from exc
    return Path(path)


_BASE_MODELS = {
    "ViT-B/32": "openai/clip-vit-base-patch32",
    "ViT-B/16": "openai/clip-vit-base-patch16",
    "ViT-L/14": "openai/clip-vit-large-patch14",
    "ViT-L/14@336px": "openai/clip-vit-large-patch14-336",
}


def base_model_id(backbone: str | None) -> str | None:
    """The Hub id of the OpenAI CLIP checkpoint named ``backbone``, if it has one."""
    return _BASE_MODELS.get(backbone or "")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def default_filename(prompt: FPPPrompt, tag: str | None = None) -> str:
    """The conventional Hub file name ``fpp_<backbone>_<classes>_seed<k>.safetensors``.

    ``<classes>`` is ``agnostic`` for class-agnostic prompts, else ``tag`` (e.g. a data set
    name, ``dtd``) or ``<N>cls-<hash>`` of the class names. Example:
    ``fpp_vit-b-16_agnostic_seed0.safetensors``.
    """
    if not isinstance(prompt, FPPPrompt):
        raise ConfigError(f"default_filename needs an FPPPrompt, got {type(prompt).__name__}")
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
    return f"fpp_{_slug(prompt.backbone or 'unknown')}_{classes}{tail}.safetensors"


def push_fpp_prompt(
    prompts: FPPPrompt | str | os.PathLike[str] | Sequence[FPPPrompt | str | os.PathLike[str]],
    repo_id: str,
    *,
    filenames: Sequence[str] | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    branch: str | None = None,
    commit_message: str | None = None,
    license: str | None = None,
) -> str:
    """Upload prompt file(s) plus a generated model card to the Hub model repo ``repo_id``.

    The folder is built by :func:`fpp_init.export.build_hub_folder` (files named by
    :func:`default_filename` unless ``filenames`` is given), then uploaded with
    :func:`huggingface_hub.create_repo` (``exist_ok=True``) and
    :func:`huggingface_hub.upload_folder`. Returns the commit URL.
    """
    from .export import build_hub_folder, collect_prompts

    if not isinstance(repo_id, str):
        raise HubError(f"repo_id must be a string OWNER/NAME, got {type(repo_id).__name__}")
    _check_repo_id(repo_id, repo_id, in_ref=False)
    items = collect_prompts(prompts)
    with tempfile.TemporaryDirectory(prefix="fpp-push-") as tmp:
        build_hub_folder(items, tmp, filenames=filenames, repo_id=repo_id, license=license)
        import huggingface_hub

        try:
            extra = {} if private is None else {"private": private}
            huggingface_hub.create_repo(repo_id, token=token, exist_ok=True, **extra)
            info: Any = huggingface_hub.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                revision=branch,
                token=token,
                commit_message=commit_message or f"Upload {len(items)} FPP prompt file(s) with fpp-init {__version__}",
            )
        except Exception as exc:
            offline = " and that HF_HUB_OFFLINE is not set" if _env_true("HF_HUB_OFFLINE") else ""
            raise HubError(
                f"upload to {repo_id!r} failed ({type(exc).__name__}: {exc}); check the connection{offline}, and "
                "that you are logged in with write access (HF_TOKEN or `hf auth login`)"
            ) from exc
    return str(getattr(info, "commit_url", info))
