from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import nn


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


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would, briefly, for every thread)
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
