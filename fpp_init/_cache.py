"""Local cache of pretrained prompts, keyed by everything that determines the result."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch

from . import constants as C
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
        "fingerprint": fingerprint,
        "classnames": classnames,
        "num_classes": num_classes,
        "template": template,
        "predefined": _tensor_digest(predefined),
        "init_ctx": _tensor_digest(init_ctx),
        "config": config.result_dict(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def lookup(cache_dir: Path, key: str) -> FPPPrompt | None:
    path = cache_dir / f"{key}.safetensors"
    if not path.is_file():
        return None
    from ._load import load_local

    try:
        return load_local(path)
    except FPPError as exc:  # a damaged entry is a miss, and gets rewritten
        logger.warning("ignoring unreadable cache entry %s: %s", path, exc)
        return None


def store(cache_dir: Path, key: str, prompt: FPPPrompt) -> Path | None:
    """Write atomically; concurrent writers of one key write the same bytes, the last rename wins."""
    try:
        return prompt.save(cache_dir / f"{key}.safetensors")
    except OSError as exc:
        logger.warning("could not write FPP cache entry in %s: %s", cache_dir, exc)
        return None
