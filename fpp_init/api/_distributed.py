"""Class-sharded pretraining on ``torch.distributed`` (gloo on CPU, NCCL on CUDA).

Every rank builds the same prompts and draws the same noise from the same private generator;
each computes its share of the classes; the ctx gradient (``n_ctx x D`` floats) and the two loss
sums are added with one ``all_reduce`` each per step, so every rank takes the same AdamW step
and ends with the same ctx. Ranks first compare a hash of their inputs and stop with one
:class:`~fpp_init.errors.DistributedError` line if they differ.

The launcher's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``,
``LOCAL_RANK``) is validated before anything else; the ranks wait at most ``dist_timeout``
seconds for each other to join (the rendezvous), and a rank that goes away during the run
(killed, crashed) ends every other rank with one ``DistributedError`` line naming it.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import pickle
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import torch

from .. import constants as const
from .._io import first_line, pid_alive
from .._launch import Launch, launcher
from ..algorithm import Shard
from ..errors import DistributedError

__all__ = ["Group", "session", "local_device"]

# Tensors that collectives on a group we did not create have touched (see Group._hold), kept for
# the last few sessions so that the caller's own destroy_process_group cannot deadlock on them.
_KEPT_SESSIONS = 8
_kept: list[list[torch.Tensor]] = []
# process groups this process has joined (each rendezvous checks in under a new key)
_joins = 0


def local_device() -> torch.device | None:
    """``cuda:LOCAL_RANK`` under a launcher on a GPU machine (one GPU per rank), else ``None``."""
    launch = launcher()
    if launch is not None and torch.cuda.is_available():
        return torch.device("cuda", launch.local_rank % torch.cuda.device_count())
    return None


def _pid_gone(pid: int) -> bool:
    """Whether process ``pid`` (of this machine) has ended: absent, or a zombie nobody reaped yet."""
    if not pid_alive(pid):
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


def _host_id() -> int:
    return int.from_bytes(hashlib.sha256(socket.gethostname().encode()).digest()[:7], "little")


def _reason(exc: BaseException) -> str:
    """The first sentence of torch's message, without its source location (``[.../pair.cc:545]``)."""
    text = re.sub(r"^\[[^\]]*\.(?:cc|cpp|h|hpp):\d+\]\s*", "", first_line(exc))
    text = re.split(r"(?<=[a-z)])\. ", text, maxsplit=1)[0].rstrip(".")
    return text if len(text) <= 160 else text[:157] + "..."


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
        # (pid, host) of every rank, to name the one that went away if a collective fails
        ident = torch.zeros(self.world, 2, dtype=torch.int64, device=self.device)
        ident[self.rank] = torch.tensor([os.getpid(), _host_id()], dtype=torch.int64)
        self._collective(self.dist.all_reduce, self._hold(ident))
        self.peers = [(int(pid), int(host)) for pid, host in ident.cpu().tolist()] if self.world > 1 else []

    def _hold(self, t: torch.Tensor) -> torch.Tensor:
        self.held.append(t)
        return t

    def _collective(self, collective: Any, t: torch.Tensor, **kw: Any) -> None:
        """One collective; a peer that went away (killed, crashed, connection lost) is a one-line error."""
        try:
            collective(t, **kw)
        except RuntimeError as exc:
            raise self._lost(exc) from None

    def _lost(self, exc: BaseException) -> DistributedError:
        here = _host_id()
        local = [
            (r, pid) for r, (pid, host) in enumerate(getattr(self, "peers", [])) if r != self.rank and host == here
        ]
        deadline = time.monotonic() + (const.DIST_LOST_GRACE if local else 0.0)
        while True:  # a killed peer's socket closes as it exits: give the process a moment to be gone
            gone = [r for r, pid in local if _pid_gone(pid)]
            if gone or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if gone:  # their processes ended
            who = f"rank {gone[0]} went away" if len(gone) == 1 else f"ranks {', '.join(map(str, gone))} went away"
        elif self.world == 2:  # on another machine, or alive but unreachable
            who = f"lost the connection to rank {1 - self.rank}"
        else:
            who = "lost the connection to another rank"
        return DistributedError(
            f"rank {self.rank} of {self.world}: {who} during the run ({_reason(exc)}); nothing more is computed "
            "here: start all the ranks again (a run with a checkpoint resumes from it)"
        )

    def _reduce(self, t: torch.Tensor) -> None:
        """Sum ``t`` over the ranks in place, through one buffer per shape that lives as long as the group."""
        key = (tuple(t.shape), t.dtype)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = self._hold(torch.empty(t.shape, dtype=t.dtype, device=self.device))
        buf.copy_(t)
        self._collective(self.dist.all_reduce, buf)
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
        self._collective(self.dist.all_reduce, low, op=self.dist.ReduceOp.MIN)
        self._collective(self.dist.all_reduce, high, op=self.dist.ReduceOp.MAX)
        if not torch.equal(low, high):
            raise DistributedError(
                f"rank {self.rank} of {self.world}: the ranks were given different {what}; every rank must get "
                "exactly the same arguments"
            )

    def broadcast(self, obj: Any) -> Any:
        """``obj`` of rank 0 (pickled), on every rank; with ``None`` it serves as a barrier."""
        data = pickle.dumps(obj) if self.rank == 0 else b""
        size = self._hold(torch.tensor([len(data)], dtype=torch.int64, device=self.device))
        self._collective(self.dist.broadcast, size, src=0)
        buf = self._hold(torch.empty(int(size.item()), dtype=torch.uint8, device=self.device))
        if self.rank == 0:
            buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        self._collective(self.dist.broadcast, buf, src=0)
        return obj if self.rank == 0 else pickle.loads(buf.cpu().numpy().tobytes())


def _join(dist: Any, launch: Launch, backend: str, timeout: float) -> None:
    """The rendezvous (``env://``, bounded by ``timeout`` seconds: the other ranks must join by then),
    then the process group; collectives keep torch's own timeout."""
    from torch.distributed.rendezvous import rendezvous

    global _joins
    where = f"rank {launch.rank} of {launch.world}"
    start = time.monotonic()

    def not_joined(why: str) -> DistributedError:
        return DistributedError(
            f"{where}: the other ranks did not all join within {timeout:g} s at {launch.master} ({why}): start all "
            f"{launch.world} ranks (torchrun --nproc-per-node {launch.world} ...), or allow more time with "
            "dist_timeout (CLI --dist-timeout)"
        )

    try:
        store, rank, world = next(rendezvous("env://", timeout=datetime.timedelta(seconds=timeout)))
    except Exception as exc:  # DistStoreError / DistNetworkError (RuntimeError), ValueError, OSError
        raise not_joined(_reason(exc)) from None
    # every rank checks in; the last one raises the flag the others wait for (torch < 2.1's rendezvous
    # returns before the others have joined, and the process group would then wait 30 minutes). The
    # key is new for every group this process makes, and for every restart of an elastic launcher.
    key = f"fpp-init/joined/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/{_joins}"
    _joins += 1
    try:
        if store.add(key, 1) >= world:
            store.set(key + "/all", "1")
        left = max(0.1, timeout - (time.monotonic() - start))
        store.wait([key + "/all"], datetime.timedelta(seconds=left))
    except Exception as exc:
        try:
            joined = f"{store.add(key, 0)} of {world} ranks joined"
        except Exception:
            joined = _reason(exc)
        raise not_joined(joined) from None
    try:
        dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world)
    except Exception as exc:
        raise DistributedError(f"{where}: could not join the process group ({backend}): {_reason(exc)}") from None


@contextlib.contextmanager
def session(requested: bool | None, device: torch.device, timeout: float = 300.0) -> Iterator[Group | None]:
    """The process group of this run, or ``None`` for a single process.

    ``requested=None`` uses an existing group of more than one rank, or makes one (and removes
    it afterwards) when a launcher set ``WORLD_SIZE > 1``; ``True`` requires one; ``False`` never.
    ``timeout``: seconds the rendezvous waits for the other ranks.
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
        launch = launcher()
        if launch is None:
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
        _join(dist, launch, backend, timeout)
        created = True
    try:
        group = Group(dist, device)
    except BaseException:
        if created:
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
        raise
    failed = False
    try:
        yield group if (group.world > 1 or requested) else None
    except BaseException:
        failed = True
        raise
    finally:
        if created:
            if failed:  # a broken group (a rank went away) must not replace the error with its own
                with contextlib.suppress(Exception):
                    dist.destroy_process_group()
            else:
                dist.destroy_process_group()  # joins gloo's workers: only then may the held tensors go
            _kept.clear()  # those of sessions nested in this one (a zoo's jobs) went with the group
        else:  # the caller destroys the group later: keep what our collectives touched until then
            _kept.append(group.held)
            del _kept[:-_KEPT_SESSIONS]
        group.held = []
