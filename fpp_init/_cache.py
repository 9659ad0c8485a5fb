"""Local cache of pretrained prompts, keyed by everything that determines the result.

One ``<key>.safetensors`` file per entry in :func:`default_cache_dir`. The key hashes
the text-tower fingerprint, class names, class count, template, alignment target,
explicit start, the result-relevant config fields and the fpp-init version (a new
release may compute differently). Entries are ordinary prompt files, written
atomically (unique temp file + rename), so concurrent writers of one key never leave
a partial file and readers see either no entry or a whole one. Deleting the folder
is always safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch

from . import constants as C
from ._version import __version__
from .config import FPPConfig
from .errors import FPPError
from .prompt import FPPPrompt

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$FPP_INIT_CACHE``, else ``$XDG_CACHE_HOME/fpp-init``, else ``~/.cache/fpp-init``."""
    env = os.environ.get(C.CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fpp-init"


def resolve_cache_dir(cache: bool | str | os.PathLike[str] | None) -> Path | None:
    """The cache folder a ``cache=`` option means: ``False``/``None`` none, ``True`` the default, else that folder."""
    if cache is None or cache is False:
        return None
    return default_cache_dir() if cache is True else Path(cache)


def _tensor_digest(t: torch.Tensor | None) -> str | None:
    if t is None:
        return None
    t = t.detach().to("cpu", torch.float32).contiguous()
    return hashlib.sha256(str(tuple(t.shape)).encode() + t.numpy().tobytes()).hexdigest()


def cache_key(
    fingerprint: str,
    classnames: list[str] | None,
    num_classes: int,
    template: str | None,
    predefined: torch.Tensor,
    init_ctx: torch.Tensor | None,
    config: FPPConfig,
) -> str:
    """Hash of the text tower, class set, alignment target, start and result-relevant config."""
    payload = {
        "format": C.FORMAT_VERSION,
        "fpp_init": __version__,
        "fingerprint": fingerprint,
        "classnames": classnames,
        "num_classes": num_classes,
        "template": template,
        "predefined": _tensor_digest(predefined),
        "init_ctx": _tensor_digest(init_ctx),
        "config": config.result_dict(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def entry_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / f"{key}.safetensors"


def lookup(
    cache_dir: Path, key: str, *, fingerprint: str | None = None, n_ctx: int | None = None, width: int | None = None
) -> FPPPrompt | None:
    """The cached prompt for ``key``, or ``None``; unreadable or inconsistent entries are misses."""
    path = entry_path(cache_dir, key)
    if not path.is_file():
        return None
    from ._load import check_prompt, load_local

    try:
        prompt = load_local(path)
        check_prompt(prompt, n_ctx=n_ctx, width=width, fingerprint=fingerprint, where=f"cache entry {path}")
    except FPPError as exc:  # a damaged or foreign entry is a miss, and gets rewritten
        logger.warning("ignoring unusable FPP cache entry %s: %s", path, exc)
        return None
    return prompt


def store(cache_dir: Path, key: str, prompt: FPPPrompt) -> Path | None:
    """Write atomically; concurrent writers of one key write the same bytes, the last rename wins."""
    try:
        return prompt.save(entry_path(cache_dir, key))
    except OSError as exc:
        logger.warning("could not write FPP cache entry in %s: %s", cache_dir, exc)
        return None
