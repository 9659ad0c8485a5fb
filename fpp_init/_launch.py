"""The launcher's environment (torchrun's ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...), validated
without torch, so that the CLI answers a malformed one before it imports anything heavy."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import DistributedError

__all__ = ["Launch", "launcher"]


@dataclass(frozen=True)
class Launch:
    """This process's place among the ranks a launcher started (its validated environment)."""

    rank: int
    world: int
    local_rank: int
    master: str  # MASTER_ADDR:MASTER_PORT


def _env_int(name: str, low: int, high: int | None, hint: str) -> int:
    raw = os.environ.get(name, "")
    try:
        value = int(raw.strip())
    except ValueError:
        raise DistributedError(f"{name}={raw!r} is not a whole number; {hint}") from None
    if value < low or (high is not None and value > high):
        rule = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise DistributedError(f"{name}={value} must be {rule}; {hint}")
    return value


def launcher() -> Launch | None:
    """The launcher's environment, validated: ``None`` for a single process (no ``WORLD_SIZE``, or
    ``WORLD_SIZE=1``); :class:`DistributedError` naming the variable when a value is malformed or
    inconsistent (``WORLD_SIZE=two``, ``RANK=5`` with ``WORLD_SIZE=2``, no ``MASTER_ADDR``)."""
    if "WORLD_SIZE" not in os.environ:
        return None
    hint = "torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT for every rank"
    world = _env_int("WORLD_SIZE", 1, None, hint)
    if "RANK" not in os.environ:
        if world == 1:
            return None
        raise DistributedError(f"WORLD_SIZE={world} but RANK is not set; {hint}")
    rank = _env_int("RANK", 0, world - 1, f"the ranks are 0 to {world - 1} for WORLD_SIZE={world}")
    if world == 1:
        return None
    local = _env_int("LOCAL_RANK", 0, None, hint) if os.environ.get("LOCAL_RANK", "").strip() else 0
    addr = os.environ.get("MASTER_ADDR", "").strip()
    if not addr:
        raise DistributedError(f"WORLD_SIZE={world} but MASTER_ADDR is not set; {hint}")
    if "MASTER_PORT" not in os.environ:
        raise DistributedError(f"WORLD_SIZE={world} but MASTER_PORT is not set; {hint}")
    port = _env_int("MASTER_PORT", 1, 65535, hint)
    return Launch(rank, world, local, f"{addr}:{port}")
