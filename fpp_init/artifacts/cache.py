"""Local cache of pretrained prompts, keyed by everything that determines the result.

One ``<key>.safetensors`` file per entry in the cache folder (``$FPP_INIT_CACHE``, else
``$XDG_CACHE_HOME/fpp-init``, else ``~/.cache/fpp-init``). The key hashes the text-tower
fingerprint, class names, class count, template, alignment target, explicit start, the
result-relevant config fields and the fpp-init version (a new release may compute
differently). An entry is an ordinary prompt file that also records its own key; a lookup
returns it only if that key and its metadata (fingerprint, class names, template, config)
match the request, so a file copied or renamed into another entry's place is a miss.

Entries are written atomically, so concurrent writers of one key never leave a partial file.
A folder that cannot be read or written disables the cache with one warning
(:class:`~fpp_init.errors.CacheWarning`); the cache never fails a run. Deleting the folder is
always safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import constants as const
from .._io import atomic_write_bytes
from .._version import __version__
from ..config import FPPConfig
from ..errors import CacheWarning, FPPError
from .files import read_prompt_file
from .fpp_prompt import FPPPrompt, prompt_bytes

logger = logging.getLogger(__name__)

__all__ = ["CacheRequest", "PromptCache"]


def _tensor_digest(t: torch.Tensor | None) -> str | None:
    if t is None:
        return None
    t = t.detach().to("cpu", torch.float32).contiguous()
    return hashlib.sha256(str(tuple(t.shape)).encode() + t.numpy().tobytes()).hexdigest()


@dataclass(frozen=True)
class CacheRequest:
    """Everything that determines a pretraining result."""

    fingerprint: str
    classnames: list[str] | None
    num_classes: int
    template: str | None  # or a description of the live model's prompt layout
    predefined: torch.Tensor
    init_ctx: torch.Tensor | None
    config: FPPConfig

    @property
    def key(self) -> str:
        payload = {
            "format": const.FORMAT_VERSION,
            "fpp_init": __version__,
            "fingerprint": self.fingerprint,
            "classnames": self.classnames,
            "num_classes": self.num_classes,
            "template": self.template,
            "predefined": _tensor_digest(self.predefined),
            "init_ctx": _tensor_digest(self.init_ctx),
            "config": self.config.result_dict(),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]

    def matches(self, prompt: FPPPrompt, recorded_key: str | None) -> bool:
        """Whether an entry's own metadata says it is the result of this request."""
        return (
            recorded_key == self.key
            and prompt.fingerprint == self.fingerprint
            and prompt.classnames == self.classnames
            and prompt.num_classes == self.num_classes
            and self.config.matches_recorded(prompt.config, self.num_classes)
        )


class PromptCache:
    """The cache folder, disabled (with one :class:`CacheWarning`) as soon as it cannot be used."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.enabled = True

    def _disable(self, why: str) -> None:
        if self.enabled:
            warnings.warn(f"prompt cache {str(self.folder)!r} disabled for this run: {why}", CacheWarning, stacklevel=4)
        self.enabled = False

    def path(self, key: str) -> Path:
        return self.folder / f"{key}{const.SUFFIX}"

    def lookup(self, request: CacheRequest) -> FPPPrompt | None:
        """The cached prompt for ``request``, or ``None``; unreadable or foreign entries are misses."""
        if not self.enabled:
            return None
        key = request.key
        path = self.path(key)
        try:
            if self.folder.exists() and not self.folder.is_dir():
                self._disable("it exists and is not a folder")
                return None
            if not path.exists():
                return None
            found = read_prompt_file(path)
        except PermissionError as exc:
            self._disable(f"cannot read it ({exc.strerror})")
            return None
        except (FPPError, OSError) as exc:
            warnings.warn(f"ignoring unusable prompt cache entry {str(path)!r}: {exc}", CacheWarning, stacklevel=3)
            return None
        if not request.matches(found.prompt, found.metadata.get(const.CACHE_KEY_FIELD)):
            logger.info("cache entry %s belongs to other inputs; ignored (it will be rewritten)", path)
            return None
        logger.info("prompt from cache (key %s)", key)
        found.prompt.cache_entry = path
        return found.prompt

    def store(self, request: CacheRequest, prompt: FPPPrompt) -> Path | None:
        """Write the entry atomically; a write that fails disables the cache with one warning."""
        if not self.enabled:
            return None
        try:
            data = prompt_bytes(prompt, {const.CACHE_KEY_FIELD: request.key})
            return atomic_write_bytes(self.path(request.key), data, what="prompt cache entry")
        except (FPPError, OSError) as exc:
            self._disable(str(exc))
            return None
