"""Where a prompt comes from: a local file, an ``hf://`` reference, ``OWNER/REPO`` + a file name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .. import constants as const
from .._validate import check_bool, check_ctx, check_path, check_prompt_path, check_str, is_prompt_path
from ..errors import ConfigError, HubError, PickleFileError
from . import hub
from .files import PromptFile, read_prompt_file
from .fpp_prompt import FPPPrompt, current_ctx

__all__ = ["HubAccess", "resolve_path", "read_source", "as_prompt", "is_prompt_path"]


class HubAccess:
    """How Hub sources are fetched (validated once): revision, cache folder, token, offline."""

    def __init__(
        self,
        revision: Any = None,
        cache_dir: Any = None,
        token: Any = None,
        local_files_only: Any = False,
    ) -> None:
        self.revision = check_str(revision, "revision", allow_none=True)
        self.cache_dir = None if cache_dir is None else check_path(cache_dir, "cache_dir")
        if token is not None and not isinstance(token, (str, bool)):
            raise ConfigError(f"token must be a string, True/False or None, got {type(token).__name__}", param="token")
        self.token = token
        self.local_files_only = check_bool(local_files_only, "local_files_only")


def resolve_path(
    source: Any, filename: Any = None, *, access: HubAccess | None = None, allow_pickle: bool = False
) -> Path:
    """The local file behind ``source``: a path, ``hf://OWNER/REPO[@REV]/FILE``, or ``OWNER/REPO`` + ``filename``."""
    access = access or HubAccess()
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError(
            f"source must be a prompt file path or an hf:// reference, got {source!r} ({type(source).__name__})",
            param="source",
        )
    if filename is not None:
        check_str(filename, "filename")
        if not isinstance(source, str) or hub.is_hub_ref(source):
            raise HubError(f"with filename=, source must be a repository id OWNER/NAME, got {source!r}")
        hub.check_repo_id(source, "source")  # 'a/b/c' + filename must not become repository a/b
        source = f"{const.HUB_SCHEME}{source}/{filename}"
    if hub.is_hub_ref(source):
        ref = hub.parse_hub_ref(str(source), revision=access.revision)
        if Path(ref.filename).suffix.lower() in const.PICKLE_SUFFIXES and not allow_pickle:
            raise PickleFileError(
                f"{ref} is a pickle (torch.save) file; pickles can run code, so fpp-init refuses them by default. "
                "If you trust the repository, pass allow_pickle=True (read with torch.load(weights_only=True))"
            )
        path = hub.download(
            ref, cache_dir=access.cache_dir, token=access.token, local_files_only=access.local_files_only
        )
        assert path is not None
        return path
    if access.revision is not None:
        raise HubError(
            f"revision={access.revision!r} applies only to Hub sources, not to the local path {os.fspath(source)!r}"
        )
    return check_prompt_path(source, "source", readable=False)  # read_prompt_file opens it (same messages)


def read_source(
    source: Any, filename: Any = None, *, access: HubAccess | None = None, allow_pickle: Any = False
) -> PromptFile:
    """Resolve and read a prompt source (validated)."""
    allow = check_bool(allow_pickle, "allow_pickle")
    return read_prompt_file(resolve_path(source, filename, access=access, allow_pickle=allow), allow_pickle=allow)


def as_prompt(source: Any, *, what: str = "source", allow_pickle: bool = False) -> FPPPrompt:
    """An :class:`FPPPrompt` from a prompt, a ``[n_ctx, D]`` tensor, a file path or an ``hf://`` reference."""
    if isinstance(source, FPPPrompt):
        current_ctx(source)  # changed in place since it was made?
        return source
    if isinstance(source, torch.Tensor):
        return FPPPrompt(ctx=check_ctx(source, what).float().cpu().clone(), template=None)
    if isinstance(source, (str, os.PathLike)):
        return read_source(source, allow_pickle=allow_pickle).prompt
    raise ConfigError(
        f"{what} must be an FPPPrompt, a [n_ctx, D] tensor, a prompt file path or an hf:// reference; "
        f"got {type(source).__name__}",
        param=what,
    )
