"""Checkpoint files of a pretraining run (``checkpoint=`` / ``--checkpoint``).

A checkpoint is a ``torch.save`` file of plain containers and tensors (read back with
``weights_only=True``): the inputs' key, the completed step count, ctx, AdamW and scheduler
state, the private generator's state and the per-step losses. It is written atomically by rank 0
only, and resuming restores all of it, so an interrupted and resumed run ends with exactly the
result of an uninterrupted one. A checkpoint written for other inputs is refused.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write_bytes, path_stat, read_regular_file
from .._runtime import load_tensors_only
from .._validate import check_path
from ..algorithm import TrainState
from ..errors import CheckpointError, FPPError

logger = logging.getLogger(__name__)

__all__ = ["FileCheckpoint", "completed_steps"]

_FORMAT = "fpp-init-checkpoint"
_VERSION = 1
_MAX_BYTES = 256 * 2**20


class FileCheckpoint:
    """Save / load the :class:`~fpp_init.algorithm.TrainState` of the run with inputs ``key``."""

    def __init__(self, path: Path, key: str, steps: int, every: int, group: Any = None) -> None:
        self.path, self.key, self.steps, self.every, self.group = Path(path), key, steps, every, group

    @property
    def _writer(self) -> bool:
        return self.group is None or self.group.rank == 0

    def _read(self) -> TrainState | None:
        obj = _load(self.path)
        if obj is None:
            return None
        if obj.get("version") != _VERSION:
            raise CheckpointError(f"checkpoint {str(self.path)!r} has format version {obj.get('version')!r}; delete it")
        if obj.get("key") != self.key:
            raise CheckpointError(
                f"checkpoint {str(self.path)!r} was written for other inputs (model weights, class names, template or "
                "config differ); delete it or choose another checkpoint path"
            )
        try:
            return TrainState(
                step=int(obj["step"]),
                ctx=obj["ctx"],
                optimizer=obj["optimizer"],
                scheduler=obj["scheduler"],
                generator=obj["generator"],
                records=obj["records"],
            )
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"checkpoint {str(self.path)!r} is incomplete; delete it to start over") from None

    def load(self) -> TrainState | None:
        state = self._read() if self._writer else None
        if self.group is not None:
            state = self.group.broadcast(state)
        if state is not None:
            logger.info("resuming from checkpoint %s (step %d of %d)", self.path, state.step, self.steps)
        return state

    def save(self, state: TrainState) -> None:
        if not self._writer:
            return
        buf = io.BytesIO()
        torch.save(
            {
                "format": _FORMAT,
                "version": _VERSION,
                "key": self.key,
                "step": state.step,
                "ctx": state.ctx,
                "optimizer": state.optimizer,
                "scheduler": state.scheduler,
                "generator": state.generator,
                "records": state.records,
            },
            buf,
        )
        atomic_write_bytes(self.path, buf.getvalue(), what="checkpoint")
        logger.info("checkpoint %s: step %d of %d", self.path, state.step, self.steps)

    def finish(self) -> None:
        """The run is complete and its result returned: the checkpoint is no longer needed."""
        if self._writer:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def _load(path: Path) -> dict[str, Any] | None:
    """The contents of the checkpoint file ``path`` (an fpp-init checkpoint), ``None`` when there is none."""
    if path_stat(path, what="checkpoint", error=CheckpointError) is None:
        return None
    data = read_regular_file(path, limit=_MAX_BYTES, what="checkpoint", error=CheckpointError)
    try:
        obj = load_tensors_only(data)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read ({type(exc).__name__}); delete it to start over"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != _FORMAT:
        raise CheckpointError(f"{str(path)!r} is not an fpp-init checkpoint; choose another checkpoint path")
    return obj


def completed_steps(path: str | os.PathLike[str]) -> int | None:
    """The steps a checkpoint file records as done (what a run with it resumes after), or ``None`` when
    there is no usable checkpoint there (the run itself then says why, or starts afresh)."""
    try:
        obj = _load(check_path(path, "checkpoint"))
    except FPPError:
        return None
    step = obj.get("step") if obj is not None else None
    return step if isinstance(step, int) else None
