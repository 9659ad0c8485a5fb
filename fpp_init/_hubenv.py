"""Where the Hugging Face Hub stands for this process, for every download fpp-init starts or
asks a library to start (prompt files, transformers and OpenCLIP models).

``HF_HUB_OFFLINE`` is read now (huggingface_hub itself reads it once, at import). Before a
download that may use the network, one short connection probe
(:data:`~fpp_init.constants.HUB_PROBE_TIMEOUT` seconds) tells whether the endpoint is
reachable; if it is not, only the local cache is used, so an offline machine gets its answer at
once instead of after huggingface_hub's retries (about 25 s per file). huggingface_hub's retry
messages are kept out of the output unless fpp-init's logger is at INFO or lower.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from . import constants as const
from ._validate import check_str
from .errors import HubError

__all__ = [
    "hub_offline",
    "hub_endpoint",
    "hub_reachable",
    "cache_only_reason",
    "quiet_hub",
    "cache_only",
    "check_repo_id",
]

_TRUE = {"1", "on", "yes", "true"}


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set now, in the environment or in huggingface_hub's constants."""
    from huggingface_hub import constants as hf_constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
    return env or bool(getattr(hf_constants, "HF_HUB_OFFLINE", False))


def hub_endpoint() -> str:
    from huggingface_hub import constants as hf_constants

    return os.environ.get("HF_ENDPOINT") or hf_constants.ENDPOINT


def hub_reachable() -> bool:
    """One TCP connection attempt to the endpoint, at most HUB_PROBE_TIMEOUT seconds."""
    url = urlparse(hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=const.HUB_PROBE_TIMEOUT).close()
    except OSError:
        return False
    return True


def cache_only_reason() -> str | None:
    """Why only the local cache can be used now (offline mode, or the endpoint unreachable), or ``None``."""
    if hub_offline():
        return "offline mode is on (HF_HUB_OFFLINE=1)"
    if not hub_reachable():
        return f"the Hub ({hub_endpoint()}) cannot be reached within {const.HUB_PROBE_TIMEOUT:g} s (no network?)"
    return None


@contextlib.contextmanager
def quiet_hub() -> Iterator[None]:
    """Keep huggingface_hub's retry warnings out of the output unless fpp-init logs at INFO or lower."""
    hub_logger = logging.getLogger("huggingface_hub")
    old = hub_logger.level
    if not logging.getLogger("fpp_init").isEnabledFor(logging.INFO):
        hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(old)


@contextlib.contextmanager
def cache_only(on: bool) -> Iterator[None]:
    """With ``on``, huggingface_hub answers from the local cache only while the block runs (its offline
    switch, restored afterwards), for libraries that take no ``local_files_only`` argument."""
    if not on:
        yield
        return
    from huggingface_hub import constants as hf_constants

    old = getattr(hf_constants, "HF_HUB_OFFLINE", False)
    hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hf_constants.HF_HUB_OFFLINE = old


def check_repo_id(repo_id: Any, name: str = "repo_id") -> str:
    """An ``OWNER/NAME`` repository id, checked with huggingface_hub's own validator."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    checked = check_str(repo_id, name, error=HubError)
    if checked.count("/") != 1:
        raise HubError(f"{name} {checked!r} must be OWNER/NAME, e.g. someone/fpp-prompts")
    try:
        validate_repo_id(checked)
    except HFValidationError as exc:
        raise HubError(
            f"{name} {checked!r} is not a valid repository id OWNER/NAME (letters, digits, '-', '_', '.'): "
            f"{' '.join(str(exc).split())}"
        ) from None
    return checked
