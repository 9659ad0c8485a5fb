"""The validated hyperparameters of FPP (pure Python: no torch needed to build or check one)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from . import constants as const
from ._validate import check_bool, check_choice, check_float, check_int
from .errors import ConfigError

__all__ = ["FPPConfig", "SharpnessConfig", "as_config"]

InitMode = Literal["random", "predefined"]
Autocast = Literal["auto", "off", "fp16", "bf16"]

#: Fields that change only speed or memory, never the result; left out of cache keys and checks.
EXECUTION_FIELDS = frozenset({"chunk_classes", "share_prefix", "autocast", "threads", "dist_timeout"})


@dataclass(frozen=True)
class FPPConfig:
    """Hyperparameters of FPP pretraining; defaults are the paper's.

    Attributes:
        steps: optimisation steps (AdamW steps, one cosine-scheduler step each); at least 1.
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
            of once per class (exact; about 2x faster per step on CPU).
        autocast: ``"auto"`` (fp16 autocast on CUDA for fp32 towers, off elsewhere),
            ``"off"``, ``"fp16"`` or ``"bf16"``. The ctx master copy and the losses
            are always fp32; ``"off"`` gives fp32 results equal to the straightforward
            full-length computation.
        threads: torch intra-op threads on the CPU while pretraining (restored after);
            ``None`` chooses: ``OMP_NUM_THREADS`` if set, else the CPUs this process may
            use (affinity, cgroup quota) that are not busy with other work (load average).
        dist_timeout: under a launcher (torchrun), seconds each rank waits for all the others to
            join before it stops with a :class:`~fpp_init.errors.DistributedError`.
    """

    steps: int = const.DEFAULT_STEPS
    lr: float = const.DEFAULT_LR
    min_lr: float = const.DEFAULT_MIN_LR
    weight_decay: float = const.DEFAULT_WEIGHT_DECAY
    num_noise: int = const.DEFAULT_NUM_NOISE
    ctx_noise: float = const.DEFAULT_CTX_NOISE
    cls_noise: float = const.DEFAULT_CLS_NOISE
    flat_weight: float | None = None
    init: InitMode = "random"
    init_std: float = const.DEFAULT_INIT_STD
    seed: int = 0
    chunk_classes: int = const.DEFAULT_CHUNK_CLASSES
    share_prefix: bool = True
    autocast: Autocast = "auto"
    threads: int | None = None
    dist_timeout: float = const.DEFAULT_DIST_TIMEOUT

    def __post_init__(self) -> None:
        check_int(self.steps, "steps", min=1, max=const.MAX_STEPS)
        check_int(self.num_noise, "num_noise", min=1, max=const.MAX_NUM_NOISE)
        check_int(self.seed, "seed", min=0, max=const.MAX_SEED)
        check_int(self.chunk_classes, "chunk_classes", min=1)
        check_float(self.lr, "lr", positive=True)
        for name in ("min_lr", "weight_decay", "ctx_noise", "cls_noise", "init_std"):
            check_float(getattr(self, name), name, min=0.0)
        if self.min_lr > self.lr:
            raise ConfigError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})", param="min_lr")
        if self.flat_weight is not None:
            check_float(self.flat_weight, "flat_weight", min=0.0)
        check_choice(self.init, "init", ("random", "predefined"))
        check_bool(self.share_prefix, "share_prefix")
        check_choice(self.autocast, "autocast", ("auto", "off", "fp16", "bf16"))
        if self.threads is not None:
            check_int(self.threads, "threads", min=1, max=4096)
        check_float(self.dist_timeout, "dist_timeout", positive=True, max=const.MAX_DIST_TIMEOUT)

    def resolved_flat_weight(self, num_classes: int) -> float:
        """``lambda``: the given weight, or the paper's ``1 + 15 / C``."""
        if self.flat_weight is not None:
            return float(self.flat_weight)
        return const.FLAT_WEIGHT_BASE + const.FLAT_WEIGHT_SCALE / num_classes

    def replace(self, **changes: Any) -> FPPConfig:
        """A copy with some fields changed (validated); unknown names raise :class:`ConfigError`."""
        _check_names(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = False) -> FPPConfig:
        """Inverse of :meth:`to_dict`. Unknown keys raise with ``strict=True``; otherwise (a file
        written by a newer version) they are ignored."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"an FPP configuration must be a mapping of field names, got {type(data).__name__}")
        if strict:
            _check_names(data)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def result_dict(self) -> dict[str, Any]:
        """The fields that determine the result (the cache key's part)."""
        return {k: v for k, v in self.to_dict().items() if k not in EXECUTION_FIELDS}

    def made(self, recorded: Mapping[str, Any], num_classes: int) -> bool:
        """Whether a prompt of ``num_classes`` classes whose metadata records ``recorded`` as its
        configuration is this configuration's result: every field of :meth:`result_dict` equal,
        ``flat_weight`` as resolved for ``num_classes`` (prompts record the weight they used)."""
        want = {**self.result_dict(), "flat_weight": self.resolved_flat_weight(num_classes)}
        return all(k in recorded and recorded[k] == v for k, v in want.items())


def _check_names(changes: Mapping[str, Any], cls: type | None = None, what: str = "FPP") -> None:
    known = [f.name for f in dataclasses.fields(cls or FPPConfig)]
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise ConfigError(f"unknown {what} option(s) {unknown}; known: {', '.join(known)}", param=unknown[0])


def as_config(config: Any = None, options: Mapping[str, Any] | None = None) -> FPPConfig:
    """The one way an entry point turns ``config=`` (an FPPConfig, a mapping or None) plus keyword
    overrides into a validated :class:`FPPConfig`."""
    if config is None:
        base = FPPConfig()
    elif isinstance(config, FPPConfig):
        base = config
    elif isinstance(config, Mapping):
        base = FPPConfig.from_dict(config, strict=True)
    else:
        raise ConfigError(
            f"config must be an FPPConfig (or a dict of its fields), got {type(config).__name__}; "
            "to change single fields pass them as keywords, e.g. steps=200",
            param="config",
        )
    return base.replace(**options) if options else base


@dataclass(frozen=True)
class SharpnessConfig:
    """What :func:`fpp_init.sharpness` measures (the noise itself is FPP's: ``FPPConfig.ctx_noise`` /
    ``cls_noise``).

    Attributes:
        factors: noise scales, multiples of FPP's ``ctx_noise`` / ``cls_noise``.
        draws: noise copies per scale.
        seed: seed of the private generator (noise and landscape directions).
        landscape: also compute the 1-D slice (``points`` steps in ``[-span, span]``) and, if
            ``points2d > 0``, the 2-D slice (``points2d x points2d``).
        span, points, points2d: extent and resolution of the slices, in units of FPP's ctx-noise size.
        direction_norm: ``"noise"`` (default: each direction row scaled to ``ctx_noise * sqrt(D)``,
            the norm of FPP's ctx noise at scale 1, the same for every prompt, so the slices measure
            what the noise-scale curve measures) or ``"filter"`` (to the norm of the prompt's own ctx
            row, Li et al.'s filter normalisation: a prompt with longer rows takes longer steps, which
            is not what FPP's flatness, nor TPT's Adam steps of a fixed size, are about).
    """

    factors: tuple[float, ...] = const.DEFAULT_SHARPNESS_FACTORS
    draws: int = const.DEFAULT_SHARPNESS_DRAWS
    seed: int = 0
    landscape: bool = False
    span: float = 1.0
    points: int = 21
    points2d: int = 11
    direction_norm: Literal["filter", "noise"] = "noise"

    def __post_init__(self) -> None:
        factors = self.factors
        if isinstance(factors, (str, bytes)) or not isinstance(factors, (list, tuple)) or not factors:
            raise ConfigError(f"factors must be a non-empty list of numbers >= 0, got {factors!r}", param="factors")
        object.__setattr__(self, "factors", tuple(check_float(f, "factors", min=0.0) for f in factors))
        check_int(self.draws, "draws", min=1, max=const.MAX_NUM_NOISE)
        check_int(self.seed, "seed", min=0, max=const.MAX_SEED)
        check_bool(self.landscape, "landscape")
        check_float(self.span, "span", positive=True)
        check_int(self.points, "points", min=1, max=10_000)
        check_int(self.points2d, "points2d", min=0, max=1_000)
        check_choice(self.direction_norm, "direction_norm", ("noise", "filter"))

    def replace(self, **changes: Any) -> SharpnessConfig:
        """A copy with some fields changed (validated); unknown names raise :class:`ConfigError`."""
        _check_names(changes, SharpnessConfig, "sharpness")
        return dataclasses.replace(self, **changes)
