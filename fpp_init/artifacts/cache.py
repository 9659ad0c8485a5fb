"""Local cache of pretrained prompts, keyed by everything that determines the result.

One ``<key>.safetensors`` file per entry in the cache folder (``$FPP_INIT_CACHE``, else
``$XDG_CACHE_HOME/fpp-init``, else ``~/.cache/fpp-init``). The key hashes the text-tower
fingerprint, class names, class count, template, alignment target, explicit start, the
result-relevant config fields and the fpp-init version (a new release may compute
differently). An entry is an ordinary prompt file that also records its own key; a lookup
returns it only if that key and its metadata (fingerprint, class names, template, config)
match the identity, so a file copied or renamed into another entry's place is a miss.

Entries are written atomically, so concurrent writers of one key never leave a partial file.
A folder that cannot be read or written disables the cache with one warning
(:class:`~fpp_init.errors.CacheWarning`); the cache never fails a run. Deleting the folder is
always safe.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from .. import constants as const
from .._io import atomic_write_bytes
from ..errors import CacheWarning, FPPError
from .files import read_prompt_file
from .fpp_prompt import FPPPrompt, prompt_bytes
from .identity import RunIdentity

logger = logging.getLogger(__name__)

__all__ = ["PromptCache"]


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

    def lookup(self, identity: RunIdentity) -> FPPPrompt | None:
        """The cached prompt for ``identity``, or ``None``; unreadable or foreign entries are misses."""
        if not self.enabled:
            return None
        key = identity.key
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
        if not identity.matches(found.prompt, found.metadata.get(const.CACHE_KEY_FIELD)):
            logger.info("cache entry %s belongs to other inputs; ignored (it will be rewritten)", path)
            return None
        logger.info("prompt from cache (key %s)", key)
        found.prompt.cache_entry = path
        return found.prompt

    def store(self, identity: RunIdentity, prompt: FPPPrompt) -> Path | None:
        """Write the entry atomically; a write that fails disables the cache with one warning."""
        if not self.enabled:
            return None
        try:
            data = prompt_bytes(prompt, {const.CACHE_KEY_FIELD: identity.key})
            return atomic_write_bytes(self.path(identity.key), data, what="prompt cache entry")
        except (FPPError, OSError) as exc:
            self._disable(str(exc))
            return None
