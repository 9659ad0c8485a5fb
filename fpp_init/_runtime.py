"""The execution context of a long run: frozen weights, how many CPU threads torch uses, and the
caller's global RNG (model loading draws from it).

All are set for the run and restored afterwards. On a shared CPU, an OpenMP thread pool wider than the free cores makes every one of the many
small kernels wait for a descheduled thread: measured on a 2-core machine with one core busy,
2 threads ran FPP 2.5-4.6x slower than 1 thread. So the default is the number of CPUs this
process may use and that are idle now.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "frozen",
    "global_rng_kept",
    "usable_cpus",
    "idle_cpus",
    "auto_threads",
    "cpu_threads",
    "load_tensors_only",
]

_SAMPLE_SECONDS = 0.1


def usable_cpus() -> int:
    """CPUs this process may run on: affinity mask, then a cgroup v2 / v1 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(n, quota)) if quota else max(1, n)


def _cgroup_quota() -> int | None:
    try:  # cgroup v2: "max 100000" or "150000 100000"
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as fh:
            limit, period = fh.read().split()[:2]
        if limit != "max":
            return math.ceil(int(limit) / int(period))
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", encoding="ascii") as fq:
            quota_us = int(fq.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us", encoding="ascii") as fp:
            period_us = int(fp.read())
        if quota_us > 0 and period_us > 0:
            return math.ceil(quota_us / period_us)
    except (OSError, ValueError):
        pass
    return None


def _cpu_times() -> tuple[int, int] | None:
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return idle, sum(fields[:8])


def idle_cpus(seconds: float = _SAMPLE_SECONDS) -> float | None:
    """How many CPUs of the machine were idle over the next ``seconds`` (Linux ``/proc/stat``), or ``None``."""
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(seconds)
    second = _cpu_times()
    if second is None or second[1] <= first[1]:
        return None
    share = (second[0] - first[0]) / (second[1] - first[1])
    return share * (os.cpu_count() or 1)


def auto_threads() -> int:
    """``OMP_NUM_THREADS`` if set; else the usable CPUs that are idle now (at least 1)."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    n = usable_cpus()
    if n > 1:
        idle = idle_cpus()
        if idle is not None:
            n = max(1, min(n, int(idle + 0.5)))
    return n


@contextlib.contextmanager
def cpu_threads(threads: int | None, device: torch.device) -> Iterator[int]:
    """Use ``threads`` (or :func:`auto_threads`, never more than torch uses now) intra-op threads
    while computing on the CPU; restore torch's setting afterwards."""
    old = torch.get_num_threads()
    if device.type != "cpu":
        yield old
        return
    n = threads if threads is not None else (min(old, auto_threads()) if old > 1 else old)
    if n != old:
        torch.set_num_threads(n)
        logger.info("using %d CPU thread(s) (torch had %d)", n, old)
    try:
        yield n
    finally:
        if n != old:
            torch.set_num_threads(old)


@contextlib.contextmanager
def frozen(parts: Iterable[nn.Module | torch.Tensor]) -> Iterator[None]:
    """Freeze parameters and put modules in eval mode; restore both afterwards."""
    grads: list[tuple[torch.Tensor, bool]] = []
    modes: list[tuple[nn.Module, bool]] = []
    seen: set[int] = set()
    for part in parts:
        if isinstance(part, nn.Module):
            modes.extend((m, m.training) for m in part.modules())
            tensors: Iterable[torch.Tensor] = part.parameters()
        else:
            tensors = [part]
        for t in tensors:
            if id(t) not in seen and t.is_leaf:
                seen.add(id(t))
                grads.append((t, t.requires_grad))
    try:
        for t, _ in grads:
            t.requires_grad_(False)
        for m, _ in modes:
            m.training = False
        yield
    finally:
        for t, flag in grads:
            t.requires_grad_(flag)
        for m, flag in modes:
            m.training = flag


@contextlib.contextmanager
def global_rng_kept(device: torch.device) -> Iterator[None]:
    """Restore torch's global RNG (the CPU's, and ``device``'s when it is a GPU) after the block:
    building a model's modules draws from it, and the caller's random stream must not move."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield


def load_tensors_only(source: bytes | str | os.PathLike[str]) -> Any:
    """``torch.load(..., map_location="cpu", weights_only=True)`` of a file's bytes or path: tensors and
    plain containers only, so a pickle can never run code (torch 2.0 included, whose default is
    ``weights_only=False``). The caller turns a refusal into its own one-line error; torch's warnings
    about the refused file ("Detected pickle protocol 4 ...") are not shown, that error says it all."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(
            io.BytesIO(source) if isinstance(source, bytes) else source, map_location="cpu", weights_only=True
        )
