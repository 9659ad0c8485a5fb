"""Data-free flatness of a prompt's text features (what FPP optimises), on the shared feature path.

Flatness is read from one quantity, the **loss increase** ``L(ctx') = mean_c (1 − cos(F_c(ctx'),
F_c(ctx)))``: how far the class features move, in FPP's flatness term ``1 − cos``, when the prompt's
embeddings are perturbed; 0 for no perturbation, **lower is flatter**. It is measured

* under random noise at scale ``s`` (**cosine drop**): the mean over draws ``k`` of ``L`` with noise
  ``s · N_k`` added, ``N_k`` drawn exactly as FPP draws it (std ``ctx_noise`` on the ctx positions,
  ``cls_noise`` on every other position, one pattern per draw shared by all classes). FPP maximises
  ``mean cos`` at ``s = 1``. The same base draws are used at every scale (a smooth curve) and, for a
  given seed, for every prompt with the same ``n_ctx`` and class set (a paired comparison);
* along random directions in ctx space (**landscape slices**): ``L(ctx + α d₁)`` (1-D) and
  ``L(ctx + α d₁ + β d₂)`` (2-D). Directions are drawn ``N(0, 1)`` of shape ``[n_ctx, D]`` and
  normalised row by row: ``"noise"`` (default), each row to ``ctx_noise · √D``, the norm of FPP's ctx
  noise at scale 1 and the same for every prompt, so ``α = 1`` is a step of FPP's noise size;
  ``"filter"``, each row to the norm of the matching ctx row (Li et al., 2018).

Steps of one absolute size for every prompt are what flatness means here: FPP's noise has a fixed
std, and test-time tuning moves the ctx by Adam steps whose size does not depend on the ctx's norm.
Filter normalisation scales each prompt's steps by its own norm, so a prompt with long rows (FPP's
are several times the template's) is probed with far larger perturbations and can look sharper in
the slices while it is flatter under FPP's noise; it stays available as an option.

Besides, **alignment** ``mean_c ||F_c − T_c||²`` to the features ``T`` of the predefined prompt:
FPP's alignment loss.

Random draws come from a private CPU ``torch.Generator`` seeded with ``seed``, in this order:
the noise (:func:`~fpp_init.algorithm.noise.draw_noise` with ``draws`` copies), then, for the
landscape, ``randn(n_ctx, D)`` twice (d₁, d₂). The global RNG is never touched.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from ..config import FPPConfig, SharpnessConfig
from ..errors import ConfigError, NonFiniteError, PromptShapeError
from ..towers import TextTower
from .embedded import EmbeddedPrompts
from .features import ClassFeatures
from .noise import draw_noise

logger = logging.getLogger(__name__)

__all__ = ["measure_sharpness", "SharpnessResult", "Landscape", "loss_increase"]

_GROUP = 16  # ctx variants per feature call in the landscape


@dataclass
class Landscape:
    """The loss increase ``1 − cos`` (lower is flatter) along random directions around a prompt.

    Attributes:
        norm: how the directions were normalised (``"noise"`` or ``"filter"``).
        alphas: step sizes of the 1-D slice (unit steps).
        line: loss increase at each step of the 1-D slice (along d₁).
        alphas2d: step sizes per axis of the 2-D slice, or ``None``.
        grid2d: loss increase ``[G, G]`` at ``ctx + alphas2d[i] d₁ + alphas2d[j] d₂``, or ``None``.
    """

    norm: str
    alphas: list[float]
    line: list[float]
    alphas2d: list[float] | None = None
    grid2d: torch.Tensor | None = None


@dataclass
class SharpnessResult:
    """Flatness of one prompt (see :func:`fpp_init.sharpness`).

    Attributes:
        label: the prompt's name in tables and plots.
        factors: noise scales (multiples of ``ctx_noise`` / ``cls_noise``).
        cos_drop: the loss increase ``1 − cos(F, F~)`` under noise, mean over draws and classes, per
            factor (0 at factor 0; lower is flatter).
        cos_drop_std: standard deviation over draws of the class-mean drop, per factor.
        align: ``mean_c ||F_c − T_c||²`` to the predefined prompt (FPP's alignment loss).
        ctx_noise, cls_noise: the noise std at factor 1.
        draws, seed: noise copies per factor and the generator seed.
        n_ctx, num_classes: prompt length and class count.
        landscape: the 1-D / 2-D slice, if requested.
    """

    label: str
    factors: list[float]
    cos_drop: list[float]
    cos_drop_std: list[float]
    align: float
    ctx_noise: float
    cls_noise: float
    draws: int
    seed: int
    n_ctx: int
    num_classes: int
    landscape: Landscape | None = field(default=None, repr=False)

    def drop_at(self, factor: float) -> float:
        """The cosine drop at ``factor`` (one of :attr:`factors`); :class:`ConfigError` otherwise."""
        for f, d in zip(self.factors, self.cos_drop, strict=True):
            if isinstance(factor, (int, float)) and not isinstance(factor, bool) and math.isclose(f, factor):
                return d
        raise ConfigError(f"factor {factor!r} was not measured; measured factors: {self.factors}", param="factor")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the 2-D grid as nested lists)."""
        out = asdict(self)
        if self.landscape is not None and self.landscape.grid2d is not None:
            out["landscape"]["grid2d"] = self.landscape.grid2d.tolist()
        return out


def loss_increase(clean: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """The one quantity every sharpness measure and figure panel reports: ``mean_c (1 − cos)`` between
    the clean class features ``clean`` ``[C, E]`` and perturbed ones ``perturbed`` ``[..., C, E]`` (unit
    vectors), one value per leading index; written ``|a − b|² / 2`` (no cancellation near cos = 1)."""
    return 0.5 * ((clean - perturbed) ** 2).sum(-1).mean(-1)


def _drops(
    feats: ClassFeatures, x: torch.Tensor, clean: torch.Tensor, base: torch.Tensor, factors: tuple[float, ...], bar: Any
) -> tuple[list[float], list[float]]:
    drop, spread = [], []
    variants = x[None].expand(base.shape[0], -1, -1)
    for f in factors:
        if f == 0:
            drop.append(0.0)
            spread.append(0.0)
        else:
            per_draw = loss_increase(clean, feats.all_classes(variants, f * base))
            drop.append(float(per_draw.mean()))
            spread.append(float(per_draw.std(unbiased=False)))
        bar.update()
    return drop, spread


def _landscape(
    feats: ClassFeatures,
    x: torch.Tensor,
    clean: torch.Tensor,
    dirs: torch.Tensor,
    measure: SharpnessConfig,
    ctx_noise: float,
) -> Landscape:
    if measure.direction_norm == "filter":
        target = x.norm(dim=-1, keepdim=True)
    else:
        target = torch.full((x.shape[0], 1), ctx_noise * math.sqrt(x.shape[1]), device=x.device)
    d = dirs / dirs.norm(dim=-1, keepdim=True) * target

    def along(ctxs: torch.Tensor) -> torch.Tensor:
        parts = [loss_increase(clean, feats.all_classes(ctxs[i : i + _GROUP])) for i in range(0, len(ctxs), _GROUP)]
        return torch.cat(parts)

    def axis(points: int) -> torch.Tensor:
        return (
            torch.linspace(-measure.span, measure.span, points, dtype=torch.float64)
            if points > 1
            else torch.zeros(1, dtype=torch.float64)
        )

    alphas = axis(measure.points)
    a = alphas.to(x.device, torch.float32)
    line = along(x[None] + a[:, None, None] * d[0])
    alphas2d, grid = None, None
    if measure.points2d:
        b = axis(measure.points2d)
        bb = b.to(x.device, torch.float32)
        ii, jj = torch.meshgrid(bb, bb, indexing="ij")
        grid = (
            along(x[None] + ii.reshape(-1, 1, 1) * d[0] + jj.reshape(-1, 1, 1) * d[1]).view(measure.points2d, -1).cpu()
        )
        alphas2d = b.tolist()
    return Landscape(measure.direction_norm, alphas.tolist(), line.cpu().tolist(), alphas2d, grid)


def measure_sharpness(
    tower: TextTower,
    prompts: EmbeddedPrompts,
    ctx: torch.Tensor,
    predefined_ctx: torch.Tensor,
    *,
    config: FPPConfig,
    measure: SharpnessConfig,
    label: str = "ctx",
    device: torch.device | None = None,
    progress: bool = False,
) -> SharpnessResult:
    """Sharpness of ``ctx`` ``[n_ctx, D]`` on any text tower (the core of :func:`fpp_init.sharpness`).

    ``config`` gives the noise (``ctx_noise``, ``cls_noise``) and the execution options
    (``chunk_classes``, ``share_prefix``); ``measure`` what to measure. Runs under ``no_grad``;
    the caller keeps the tower frozen and in eval mode.
    """
    if ctx.shape != predefined_ctx.shape:
        raise PromptShapeError(
            f"the prompt has {ctx.shape[0]} context vectors but the predefined prompt has "
            f"{predefined_ctx.shape[0]}; pass a template or predefined ctx of the same length"
        )
    device = device or tower.device
    n_ctx, width = ctx.shape
    prompts = EmbeddedPrompts(prompts.prefix.detach().float(), prompts.suffix.detach().float(), prompts.eot_pos.cpu())
    gen = torch.Generator(device="cpu").manual_seed(measure.seed)
    base = draw_noise(
        gen, measure.draws, prompts.used_length, width, ctx_start=prompts.ctx_start, n_ctx=n_ctx,
        ctx_noise=config.ctx_noise, cls_noise=config.cls_noise,
    ).to(device)  # fmt: skip
    dirs = torch.randn(2, n_ctx, width, generator=gen).to(device) if measure.landscape else None
    feats = ClassFeatures(
        tower, prompts, n_ctx, chunk_classes=config.chunk_classes, share_prefix=config.share_prefix, device=device
    )
    x = ctx.detach().float().to(device)
    bar = tqdm(
        total=len(measure.factors) + int(measure.landscape),
        desc=f"sharpness {label}",
        disable=not progress,
        leave=False,
    )
    with torch.no_grad():
        clean = feats.all_classes(x[None])[0]
        target = feats.all_classes(predefined_ctx.detach().float().to(device)[None])[0]
        if not (bool(torch.isfinite(clean).all()) and bool(torch.isfinite(target).all())):
            raise NonFiniteError(
                "the text tower produces NaN/Inf features: the model's weights (or the prompt embeddings) contain "
                "NaN/Inf; check the checkpoint"
            )
        align = float(((clean - target) ** 2).sum(-1).mean())
        drop, spread = _drops(feats, x, clean, base, measure.factors, bar)
        land = None
        if dirs is not None:
            land = _landscape(feats, x, clean, dirs, measure, config.ctx_noise)
            bar.update()
    bar.close()
    values = [align, *drop, *spread]
    if land is not None:
        values += land.line + ([] if land.grid2d is None else [float(land.grid2d.float().abs().max())])
    if not all(math.isfinite(v) for v in values):
        raise NonFiniteError(
            f"sharpness of {label}: the features under noise became NaN/Inf (factors {list(measure.factors)}, "
            f"ctx_noise {config.ctx_noise:g}, cls_noise {config.cls_noise:g}, span {measure.span:g}): the noise is "
            "too large for fp32; use smaller factors, noise or span"
        )
    logger.info("sharpness %s: align %.5f, drop %s", label, align, drop)
    return SharpnessResult(
        label=label,
        factors=list(measure.factors),
        cos_drop=drop,
        cos_drop_std=spread,
        align=align,
        ctx_noise=float(config.ctx_noise),
        cls_noise=float(config.cls_noise),
        draws=measure.draws,
        seed=measure.seed,
        n_ctx=int(n_ctx),
        num_classes=prompts.num_classes,
        landscape=land,
    )
