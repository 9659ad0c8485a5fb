"""The validated hyperparameters of FPP (pure Python: no torch needed to build or check one)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from . import constants as const
from ._validate import check_bool, check_choice, check_float, check_int
from .errors import ConfigError

__all__ = ["FPPConfig", "SharpnessConfig", "as_config", "option", "field_flag", "describe_fields"]

InitMode = Literal["random", "predefined"]
Autocast = Literal["auto", "off", "fp16", "bf16"]
DirectionNorm = Literal["noise", "filter"]

#: Fields that change only speed or memory, never the result; left out of cache keys and checks.
EXECUTION_FIELDS = frozenset({"chunk_classes", "share_prefix", "autocast", "threads", "dist_timeout"})


def option(default: Any, help: str, **cli: Any) -> Any:
    """A config field whose default and help text are its one definition: the CLI flag, the table in
    the docs and ``help()`` are all built from them.

    ``cli`` says what the command line needs beyond that: ``flag`` (``None``: no flag; default
    ``--field-name``), ``negative`` (a field that is ``True`` by default gets a ``--no-field-name``
    flag whose help is this text), ``choices``, ``type`` (for a field whose default is ``None``),
    ``metavar``, ``parse`` (``"floats"``: a comma-separated list) and ``default_text`` (how a
    ``None`` default reads).
    """
    return dataclasses.field(default=default, metadata={"help": help, **cli})


def field_flag(f: dataclasses.Field[Any]) -> str | None:
    """The CLI flag of a config field, as the command line spells it (``min_lr`` -> ``--min-lr``, a
    ``negative`` field -> ``--no-share-prefix``); ``None`` for a field without a flag."""
    name: str | None = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
    if name is not None and "negative" in f.metadata:
        return "--no-" + name[2:]
    return name


@dataclass(frozen=True)
class FPPConfig:
    """Hyperparameters of FPP pretraining; the defaults are the paper's.

    Every field's meaning and default are listed in the table of the docs' configuration page
    (the same text as ``fpp-init pretrain --help``), and ``help(FPPConfig)`` shows them too.
    """

    steps: int = option(
        const.DEFAULT_STEPS, "optimisation steps (AdamW steps, one cosine-schedule step each)", metavar="N"
    )
    lr: float = option(const.DEFAULT_LR, "AdamW learning rate", metavar="X")
    min_lr: float = option(const.DEFAULT_MIN_LR, "floor of the cosine learning-rate schedule (eta_min)", metavar="X")
    weight_decay: float = option(
        const.DEFAULT_WEIGHT_DECAY, "AdamW weight decay (PyTorch's default, as in the reference code)", metavar="X"
    )
    num_noise: int = option(const.DEFAULT_NUM_NOISE, "perturbed copies of every prompt per step (K)", metavar="N")
    ctx_noise: float = option(const.DEFAULT_CTX_NOISE, "std of the noise on the ctx positions", metavar="X")
    cls_noise: float = option(
        const.DEFAULT_CLS_NOISE, "std of the noise on every other position (class name, EOS, ...)", metavar="X"
    )
    flat_weight: float | None = option(
        None,
        "weight lambda of the flatness loss",
        type=float,
        metavar="X",
        default_text="1 + 15 / C, C the number of classes",
    )
    init: InitMode = option(
        "random",
        "start point: random (N(0, init_std^2)) or predefined (the template's own embeddings)",
        choices=get_args(InitMode),
    )
    init_std: float = option(const.DEFAULT_INIT_STD, "std of the random start", metavar="X")
    seed: int = option(
        0, "seed of the private generator (random start and noise); the global RNG is never touched", metavar="N"
    )
    chunk_classes: int = option(
        const.DEFAULT_CHUNK_CLASSES,
        "at most this many classes per gradient-accumulation chunk: peak memory grows with the chunk, not with "
        "C x num_noise (the same result, to float rounding)",
        metavar="N",
    )
    share_prefix: bool = option(
        True,
        "compute the SOS + ctx positions once per noise copy and let every class attend to them (exact; about 2x "
        "faster)",
        negative="compute the SOS + ctx positions again for every class (the same result, about 2x slower)",
    )
    autocast: Autocast = option(
        "auto",
        "auto (fp16 autocast on CUDA for fp32 towers, off elsewhere), off, fp16 or bf16; the ctx master copy and "
        "the losses stay fp32, and off gives results equal to the straightforward full-length computation",
        choices=get_args(Autocast),
    )
    threads: int | None = option(
        None,
        "torch CPU threads while pretraining (restored after)",
        type=int,
        metavar="N",
        default_text="OMP_NUM_THREADS if set, else the CPUs this process may use that are idle when the run starts",
    )
    dist_timeout: float = option(
        const.DEFAULT_DIST_TIMEOUT,
        "under a launcher (torchrun): seconds each rank waits for all the others to join before it stops with a "
        "DistributedError",
        metavar="SECONDS",
    )

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
        check_choice(self.init, "init", get_args(InitMode))
        check_bool(self.share_prefix, "share_prefix")
        check_choice(self.autocast, "autocast", get_args(Autocast))
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

    def matches_recorded(self, recorded: Mapping[str, Any], num_classes: int) -> bool:
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


def as_config(config: Any = None, fields: Mapping[str, Any] | None = None) -> FPPConfig:
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
    return base.replace(**fields) if fields else base


@dataclass(frozen=True)
class SharpnessConfig:
    """What :func:`fpp_init.sharpness` measures (the noise itself is FPP's: ``FPPConfig.ctx_noise`` /
    ``cls_noise``). Every field is listed in the docs' configuration page and ``help(SharpnessConfig)``.
    """

    factors: tuple[float, ...] = option(
        const.DEFAULT_SHARPNESS_FACTORS,
        "noise scales, as multiples of FPP's ctx_noise / cls_noise",
        parse="floats",
        metavar="X,X,...",
    )
    draws: int = option(const.DEFAULT_SHARPNESS_DRAWS, "noise copies per scale", metavar="N")
    seed: int = option(0, "seed of the private generator (noise and landscape directions)", metavar="N")
    landscape: bool = option(
        False,
        "also compute the 1-D slice (points steps in [-span, span]) and, if points2d > 0, the 2-D slice",
        flag=None,  # the CLI computes it for --plot
    )
    span: float = option(1.0, "half-width of the landscape slices, in unit steps (see direction_norm)", metavar="X")
    points: int = option(21, "points of the 1-D slice", metavar="N")
    points2d: int = option(11, "points per axis of the 2-D slice, 0 for none", metavar="N")
    direction_norm: DirectionNorm = option(
        "noise",
        "size of a unit step along a landscape direction: noise (FPP's ctx-noise size ctx_noise x sqrt(D), the "
        "same for every prompt, so the slices measure what the noise-scale curve measures) or filter (the norm "
        "of the prompt's own ctx row, Li et al.'s filter normalisation: a prompt with longer rows takes longer "
        "steps)",
        choices=get_args(DirectionNorm),
    )

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
        check_choice(self.direction_norm, "direction_norm", get_args(DirectionNorm))

    def replace(self, **changes: Any) -> SharpnessConfig:
        """A copy with some fields changed (validated); unknown names raise :class:`ConfigError`."""
        _check_names(changes, SharpnessConfig, "sharpness")
        return dataclasses.replace(self, **changes)


def describe_fields(cls: type) -> str:
    """The fields of a config dataclass as text (name, default, help), from their one definition."""
    lines = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        default = meta.get("default_text") or repr(f.default)
        lines.append(f"    {f.name}: {meta.get('help', '')} (default {default})")
    return "\n".join(lines)


for _cls in (FPPConfig, SharpnessConfig):
    _cls.__doc__ = f"{(_cls.__doc__ or '').rstrip()}\n\n    Fields:\n\n{describe_fields(_cls)}\n"
