"""Class-sharded pretraining on ``torch.distributed`` (gloo on CPU, NCCL on CUDA).

Every rank builds the same prompts and draws the same noise from the same private generator;
each computes its share of the classes; the ctx gradient (``n_ctx x D`` floats) and the two loss
sums are added with one ``all_reduce`` each per step, so every rank takes the same AdamW step
and ends with the same ctx. Ranks first compare a hash of their inputs and stop with one
:class:`~fpp_init.errors.DistributedError` line if they differ.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
from collections.abc import Iterator
from typing import Any

import torch

from ..algorithm import Shard
from ..errors import DistributedError

__all__ = ["Group", "session", "launched", "local_device"]

# Tensors that collectives on a group we did not create have touched (see Group._hold), kept for
# the last few sessions so that the caller's own destroy_process_group cannot deadlock on them.
_KEPT_SESSIONS = 8
_kept: list[list[torch.Tensor]] = []


def launched() -> bool:
    """Whether a launcher (torchrun) started this process as one of several ranks."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def local_device() -> torch.device | None:
    """``cuda:LOCAL_RANK`` under a launcher on a GPU machine (one GPU per rank), else ``None``."""
    if launched() and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0") or 0)
        return torch.device("cuda", local % torch.cuda.device_count())
    return None


class Group:
    """The ranks of one run and the few collectives it needs.

    Every tensor handed to a collective stays referenced from Python (:meth:`_hold`) until the
    process group is destroyed. On older torch (2.0 here; fixed upstream in mid-2025) the gloo destructor joins its worker threads while
    holding the GIL; a worker that still holds the last reference to a finished collective's
    tensor needs the GIL to free it, and the two wait for each other forever (pytorch#154976).
    With Python holding a reference, the worker's release never frees the tensor.
    """

    def __init__(self, dist: Any, device: torch.device) -> None:
        self.dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.backend = dist.get_backend()
        self.device = device if self.backend == "nccl" else torch.device("cpu")
        self.held: list[torch.Tensor] = []
        self._buffers: dict[tuple[Any, ...], torch.Tensor] = {}

    def _hold(self, t: torch.Tensor) -> torch.Tensor:
        self.held.append(t)
        return t

    def _reduce(self, t: torch.Tensor) -> None:
        """Sum ``t`` over the ranks in place, through one buffer per shape that lives as long as the group."""
        key = (tuple(t.shape), t.dtype)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = self._hold(torch.empty(t.shape, dtype=t.dtype, device=self.device))
        buf.copy_(t)
        self.dist.all_reduce(buf)
        t.copy_(buf)

    def shard(self) -> Shard:
        return Shard(self.rank, self.world, self._reduce)

    def check_same(self, key: str, what: str) -> None:
        digest = torch.tensor(
            [int.from_bytes(hashlib.sha256(key.encode()).digest()[i : i + 7], "little") for i in (0, 7, 14)],
            dtype=torch.int64,
            device=self.device,
        )
        low, high = self._hold(digest.clone()), self._hold(digest.clone())
        self.dist.all_reduce(low, op=self.dist.ReduceOp.MIN)
        self.dist.all_reduce(high, op=self.dist.ReduceOp.MAX)
        if not torch.equal(low, high):
            raise DistributedError(
                f"rank {self.rank} of {self.world}: the ranks were given different {what}; every rank must get "
                "exactly the same arguments"
            )

    def broadcast(self, obj: Any) -> Any:
        """``obj`` of rank 0 (pickled), on every rank; with ``None`` it serves as a barrier."""
        data = pickle.dumps(obj) if self.rank == 0 else b""
        size = self._hold(torch.tensor([len(data)], dtype=torch.int64, device=self.device))
        self.dist.broadcast(size, src=0)
        buf = self._hold(torch.empty(int(size.item()), dtype=torch.uint8, device=self.device))
        if self.rank == 0:
            buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        self.dist.broadcast(buf, src=0)
        return obj if self.rank == 0 else pickle.loads(buf.cpu().numpy().tobytes())


@contextlib.contextmanager
def session(requested: bool | None, device: torch.device) -> Iterator[Group | None]:
    """The process group of this run, or ``None`` for a single process.

    ``requested=None`` uses an existing group of more than one rank, or makes one (and removes
    it afterwards) when a launcher set ``WORLD_SIZE > 1``; ``True`` requires one; ``False`` never.
    """
    if requested is False:
        yield None
        return
    import torch.distributed as dist

    if not dist.is_available():
        if requested:
            raise DistributedError("distributed=True but this torch build has no torch.distributed")
        yield None
        return
    created = False
    if not dist.is_initialized():
        if not launched():
            if requested:
                raise DistributedError(
                    "distributed=True needs a launcher: run under torchrun (or set RANK, WORLD_SIZE, MASTER_ADDR "
                    "and MASTER_PORT)"
                )
            yield None
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        try:
            dist.init_process_group(backend=backend)
        except (RuntimeError, ValueError) as exc:
            raise DistributedError(
                f"could not join the process group ({backend}): {' '.join(str(exc).split())}"
            ) from None
        created = True
    group = Group(dist, device)
    try:
        yield group if (group.world > 1 or requested) else None
    finally:
        if created:
            dist.destroy_process_group()  # joins gloo's workers: only then may the held tensors go
            _kept.clear()  # those of sessions nested in this one (a zoo's jobs) went with the group
        else:  # the caller destroys the group later: keep what our collectives touched until then
            _kept.append(group.held)
            del _kept[:-_KEPT_SESSIONS]
        group.held = []
