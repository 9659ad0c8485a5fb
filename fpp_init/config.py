"""The validated hyperparameters of FPP."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from . import constants as C
from .errors import ConfigError

__all__ = ["FPPConfig"]

InitMode = Literal["random", "predefined"]
Autocast = Literal["auto", "off", "fp16", "bf16"]

# Fields that do not change the result (only speed/memory); left out of cache keys.
EXECUTION_FIELDS = frozenset({"chunk_classes", "share_prefix", "autocast"})


@dataclass(frozen=True)
class FPPConfig:
    """Hyperparameters of FPP pretraining; defaults are the paper's.

    Attributes:
        steps: optimisation steps (AdamW steps, one cosine-scheduler step each).
        lr: AdamW learning rate.
        min_lr: floor of the cosine schedule (``eta_min``).
        weight_decay: AdamW weight decay (PyTorch's default, as in the reference).
        num_noise: perturbed copies per step (``K``).
        ctx_noise: std of the noise on the ctx positions.
        cls_noise: std of the noise on every other position.
        flat_weight: weight ``lambda`` of the flatness loss; ``None`` means ``1 + 15 / C``.
        init: ``"random"`` (ctx ~ N(0, init_std^2)) or ``"predefined"``.
        init_std: std of the random start.
        seed: seed of the private ``torch.Generator`` (random start and noise).
        chunk_classes: at most this many classes per chunk of the gradient-accumulated
            step (classes are grouped by prompt length); bounds peak memory by the
            chunk, not by ``C * num_noise``; does not change the result (beyond float
            rounding, ~1e-7).
        share_prefix: compute the SOS + ctx positions once per noise copy instead
            of once per class (exact; about 1.8x faster per step on CPU).
        autocast: ``"auto"`` (fp16 autocast on CUDA for fp32 towers, off elsewhere),
            ``"off"``, ``"fp16"`` or ``"bf16"``. The ctx master copy and the losses
            are always fp32; ``"off"`` gives fp32 results equal to the straightforward
            full-length computation.
    """

    steps: int = C.DEFAULT_STEPS
    lr: float = C.DEFAULT_LR
    min_lr: float = C.DEFAULT_MIN_LR
    weight_decay: float = C.DEFAULT_WEIGHT_DECAY
    num_noise: int = C.DEFAULT_NUM_NOISE
    ctx_noise: float = C.DEFAULT_CTX_NOISE
    cls_noise: float = C.DEFAULT_CLS_NOISE
    flat_weight: float | None = None
    init: InitMode = "random"
    init_std: float = C.DEFAULT_INIT_STD
    seed: int = 0
    chunk_classes: int = C.DEFAULT_CHUNK_CLASSES
    share_prefix: bool = True
    autocast: Autocast = "auto"

    def __post_init__(self) -> None:
        def bad(name: str, want: str) -> ConfigError:
            return ConfigError(f"FPPConfig.{name} must be {want}, got {getattr(self, name)!r}")

        for name in ("steps", "num_noise", "seed", "chunk_classes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad(name, "an int")
        if self.steps < 0:
            raise bad("steps", "a non-negative int")
        if self.num_noise < 1:
            raise bad("num_noise", ">= 1")
        if self.chunk_classes < 1:
            raise bad("chunk_classes", ">= 1")
        for name in ("lr", "min_lr", "weight_decay", "ctx_noise", "cls_noise", "init_std"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise bad(name, "a finite number >= 0")
        if self.lr == 0 and self.steps > 0:
            raise bad("lr", "> 0")
        if self.min_lr > self.lr:
            raise ConfigError(f"FPPConfig.min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if self.flat_weight is not None:
            fw = self.flat_weight
            if isinstance(fw, bool) or not isinstance(fw, (int, float)) or not math.isfinite(fw) or fw < 0:
                raise bad("flat_weight", "None or a finite number >= 0")
        if self.init not in ("random", "predefined"):
            raise bad("init", "'random' or 'predefined' (pass a tensor as init_ctx= instead)")
        if self.autocast not in ("auto", "off", "fp16", "bf16"):
            raise bad("autocast", "'auto', 'off', 'fp16' or 'bf16'")

    def resolved_flat_weight(self, num_classes: int) -> float:
        """``lambda``: the given weight, or the paper's ``1 + 15 / C``."""
        if self.flat_weight is not None:
            return float(self.flat_weight)
        return C.FLAT_WEIGHT_BASE + C.FLAT_WEIGHT_SCALE / num_classes

    def replace(self, **changes: Any) -> FPPConfig:
        """A copy with some fields changed (validated); unknown names raise ConfigError."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            known = ", ".join(f.name for f in dataclasses.fields(self))
            raise ConfigError(f"unknown FPP option(s) {sorted(unknown)}; known: {known}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FPPConfig:
        """Inverse of :meth:`to_dict`; unknown keys (from newer versions) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def result_dict(self) -> dict[str, Any]:
        """The fields that determine the result (the cache key's part)."""
        return {k: v for k, v in self.to_dict().items() if k not in EXECUTION_FIELDS}
