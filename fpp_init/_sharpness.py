"""Data-free flatness diagnostics of a prompt's text features (what FPP optimises).

Two measures, both computed on the text side only (no images):

* **cosine drop** at noise scale ``s``: ``1 − mean_{k,c} cos(F_c, F~_kc)``, where
  ``F_c`` are the clean class features of the prompt and ``F~_kc`` the features with
  embedding noise ``s · N_k`` added, ``N_k`` drawn exactly as FPP draws it (std
  ``ctx_noise`` on the ctx positions, ``cls_noise`` on every other position, one
  pattern per draw shared by all classes). FPP maximises ``mean cos`` at ``s = 1``,
  so a flatter prompt has a smaller drop. The same base draws ``N_k`` are used at
  every scale (a smooth curve) and, for a given seed, for every prompt with the
  same ``n_ctx`` (a paired comparison).
* **alignment** ``mean_c ||F_c − T_c||²`` to the features ``T`` of the predefined
  prompt (the template): FPP's alignment loss.

The **landscape slice** plots the *feature drift*
``D(ctx') = mean_c (1 − cos(F_c(ctx'), F_c(ctx)))`` along random directions in ctx
space: ``ctx' = ctx + α d₁`` (1-D) and ``ctx + α d₁ + β d₂`` (2-D). Directions are
drawn ``N(0, 1)`` of shape ``[n_ctx, D]`` and normalised row by row
(``direction_norm="filter"``: each row to the norm of the matching ctx row, the
filter normalisation of Li et al., 2018; ``"noise"``: each row to
``ctx_noise · √D``, the typical size of FPP's ctx noise, the same for every prompt).

Random draws come from a private CPU ``torch.Generator`` seeded with ``seed``, in
this order: ``randn(draws, L, D)`` (noise, full context length ``L``), then, for the
landscape, ``randn(n_ctx, D)`` twice (d₁, d₂). The global RNG is never touched.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import constants as C
from ._algorithm import EmbeddedPrompts, _normalize, draw_noise
from ._pretrain import _validate_ctx
from .config import FPPConfig
from .errors import ConfigError, PromptShapeError
from .towers import TextTower

logger = logging.getLogger(__name__)

__all__ = [
    "sharpness",
    "measure_sharpness",
    "SharpnessResult",
    "Landscape",
    "DEFAULT_FACTORS",
]

#: Noise scales, as multiples of FPP's ``ctx_noise`` / ``cls_noise``.
DEFAULT_FACTORS = (0.0, 0.5, 1.0, 2.0, 4.0)
_DIRECTION_NORMS = ("filter", "noise")


@dataclass
class Landscape:
    """Feature drift ``1 − cos`` along random directions around a prompt.

    Attributes:
        norm: how the directions were normalised (``"filter"`` or ``"noise"``).
        alphas: step sizes of the 1-D slice.
        line: drift at each step of the 1-D slice (along d₁).
        alphas2d: step sizes per axis of the 2-D slice, or ``None``.
        grid2d: drift ``[G, G]`` at ``ctx + alphas2d[i] d₁ + alphas2d[j] d₂``, or ``None``.
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
        cos_drop: mean ``1 − cos(F, F~)`` over draws and classes, per factor (0 at factor 0).
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
        """The cosine drop at ``factor`` (must be one of :attr:`factors`)."""
        for f, d in zip(self.factors, self.cos_drop, strict=True):
            if math.isclose(f, factor):
                return d
        raise KeyError(f"factor {factor} was not measured; measured {self.factors}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the 2-D grid as nested lists)."""
        out = asdict(self)
        if self.landscape is not None and self.landscape.grid2d is not None:
            out["landscape"]["grid2d"] = self.landscape.grid2d.tolist()
        return out


# -- core -----------------------------------------------------------------------------------
class _Features:
    """Normalised class features of many ctx variants (and noise), via the fastest exact path."""

    def __init__(self, tower: TextTower, prompts: EmbeddedPrompts, chunk: int) -> None:
        self.tower, self.prompts, self.chunk = tower, prompts, chunk
        self.share = bool(getattr(tower, "supports_shared_prefix", False)) and bool(
            (prompts.prefix == prompts.prefix[:1]).all()
        )

    def __call__(self, ctxs: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Features ``[G, C, E]`` of ctx variants ``ctxs`` ``[G, n_ctx, D]`` (+ ``noise`` ``[G, L', D]``)."""
        p = self.prompts
        g, n_ctx = ctxs.shape[0], ctxs.shape[1]
        n_pre = p.prefix.shape[1] + n_ctx
        c = p.num_classes
        out = []
        if self.share:  # the shared SOS + ctx rows do not depend on the class chunk
            head = torch.cat([p.prefix[:1].expand(g, -1, -1), ctxs.to(p.prefix.dtype)], dim=1)
            if noise is not None:
                head = head + noise[:, :n_pre]
        for s in range(0, c, self.chunk):
            idx = slice(s, min(s + self.chunk, c))
            if self.share:
                rest = p.suffix[None, idx].expand(g, -1, -1, -1)
                if noise is not None:
                    rest = rest + noise[:, None, n_pre:]
                out.append(_normalize(self.tower.encode_shared_prefix(head, rest, p.eot[idx])))
            else:
                pre, suf = p.prefix[idx], p.suffix[idx]
                k = pre.shape[0]
                full = torch.cat(
                    [
                        pre[None].expand(g, -1, -1, -1),
                        ctxs.to(pre.dtype)[:, None].expand(-1, k, -1, -1),
                        suf[None].expand(g, -1, -1, -1),
                    ],
                    dim=2,
                )
                if noise is not None:
                    full = full + noise[:, None]
                feats = self.tower.encode(full.flatten(0, 1), p.eot[idx].repeat(g))
                out.append(_normalize(feats).view(g, k, -1))
        return torch.cat(out, dim=1)


def _half_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``1 − cos`` of unit vectors as ``|a − b|² / 2`` (no cancellation near cos = 1)."""
    return 0.5 * ((a - b) ** 2).sum(-1)


def _check_factors(factors: Sequence[float]) -> list[float]:
    try:
        out = [float(f) for f in factors]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"factors must be a sequence of numbers, got {factors!r}") from exc
    if not out or any(not math.isfinite(f) or f < 0 for f in out):
        raise ConfigError(f"factors must be a non-empty list of finite numbers >= 0, got {factors!r}")
    return out


def measure_sharpness(
    tower: TextTower,
    prompts: EmbeddedPrompts,
    ctx: torch.Tensor,
    predefined_ctx: torch.Tensor,
    *,
    label: str = "ctx",
    factors: Sequence[float] = DEFAULT_FACTORS,
    draws: int = 8,
    seed: int = 0,
    ctx_noise: float = C.DEFAULT_CTX_NOISE,
    cls_noise: float = C.DEFAULT_CLS_NOISE,
    landscape: bool = False,
    span: float = 1.0,
    points: int = 21,
    points2d: int = 11,
    direction_norm: str = "filter",
    chunk_classes: int = C.DEFAULT_CHUNK_CLASSES,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> SharpnessResult:
    """Sharpness of ``ctx`` on any text tower (the core of :func:`fpp_init.sharpness`).

    Args:
        tower: a text tower (:class:`~fpp_init.towers.CLIPTextTower` or any
            :class:`~fpp_init.towers.TextTower`); run under ``no_grad``, weights untouched.
            The caller keeps it in eval mode.
        prompts: embedded class prompts without the ctx (prefix ``[C, P, D]``; the ctx
            starts at position ``P``).
        ctx: ``[n_ctx, D]`` context vectors to measure.
        predefined_ctx: ``[n_ctx, D]`` ctx of the reference prompt (alignment target).
        factors: noise scales as multiples of ``ctx_noise`` / ``cls_noise``.
        draws: noise copies per scale.
        landscape: also compute the 1-D slice (``points`` steps in ``[−span, span]``) and,
            if ``points2d > 0``, the 2-D slice (``points2d × points2d``).
        direction_norm: ``"filter"`` or ``"noise"`` (see the module docstring).
        chunk_classes: classes per encoder call (bounds memory).
        device: where to compute (default: the tower's device).
    """
    facs = _check_factors(factors)
    for name, v in (("draws", draws), ("points", points), ("chunk_classes", chunk_classes)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name} must be a positive int, got {v!r}")
    if isinstance(points2d, bool) or not isinstance(points2d, int) or points2d < 0:
        raise ConfigError(f"points2d must be an int >= 0 (0: no 2-D slice), got {points2d!r}")
    if direction_norm not in _DIRECTION_NORMS:
        raise ConfigError(f"direction_norm must be one of {_DIRECTION_NORMS}, got {direction_norm!r}")
    if not (math.isfinite(span) and span > 0):
        raise ConfigError(f"span must be a finite number > 0, got {span!r}")
    if not all(math.isfinite(v) and v >= 0 for v in (ctx_noise, cls_noise)):
        raise ConfigError(f"ctx_noise and cls_noise must be finite numbers >= 0, got {ctx_noise!r}, {cls_noise!r}")
    ctx = _validate_ctx("ctx", ctx, tower.width)
    predefined_ctx = _validate_ctx("predefined_ctx", predefined_ctx, tower.width)
    if ctx.shape[0] != predefined_ctx.shape[0]:
        raise PromptShapeError(
            f"the prompt has {ctx.shape[0]} context vectors but the reference prompt has "
            f"{predefined_ctx.shape[0]}; pass reference= (a template or ctx) of the same length"
        )

    if device is None:
        device = getattr(tower, "text_projection", prompts.prefix).device
    device = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    n_ctx, width = ctx.shape
    length = tower.context_length
    n_pre = prompts.prefix.shape[1]
    n_used = int(prompts.eot.max()) + 1
    noise_cfg = FPPConfig(num_noise=draws, ctx_noise=ctx_noise, cls_noise=cls_noise)  # FPP's noise layout
    base = draw_noise(gen, noise_cfg, n_ctx, length, width, start=n_pre)[:, :n_used].to(device)
    dirs = torch.randn(2, n_ctx, width, generator=gen) if landscape else None

    work = EmbeddedPrompts(
        prefix=prompts.prefix.detach().float().to(device),
        suffix=prompts.suffix.detach().float()[:, : n_used - n_pre - n_ctx].to(device),
        eot=prompts.eot.to(device),
    )
    feats = _Features(tower, work, chunk_classes)
    x = ctx.detach().float().to(device)
    steps = len(facs) + (1 if landscape else 0)
    bar = tqdm(total=steps, desc=f"sharpness {label}", disable=not progress, leave=False)
    with torch.no_grad():
        clean = feats(x[None])[0]
        target = feats(predefined_ctx.detach().float().to(device)[None])[0]
        align = float(((clean - target) ** 2).sum(-1).mean())
        drop, drop_std = [], []
        for f in facs:
            if f == 0:
                drop.append(0.0)
                drop_std.append(0.0)
            else:
                per_draw = _half_sq(clean[None], feats(x[None].expand(draws, -1, -1), f * base)).mean(1)
                drop.append(float(per_draw.mean()))
                drop_std.append(float(per_draw.std(unbiased=False)))
            bar.update()
        land = None
        if dirs is not None:
            land = _landscape(feats, x, clean, dirs.to(device), span, points, points2d, direction_norm, ctx_noise)
            bar.update()
    bar.close()
    logger.info("sharpness %s: align %.5f, drop %s", label, align, drop)
    return SharpnessResult(
        label=label,
        factors=facs,
        cos_drop=drop,
        cos_drop_std=drop_std,
        align=align,
        ctx_noise=float(ctx_noise),
        cls_noise=float(cls_noise),
        draws=draws,
        seed=int(seed),
        n_ctx=int(n_ctx),
        num_classes=prompts.num_classes,
        landscape=land,
    )


def _landscape(
    feats: _Features,
    x: torch.Tensor,
    clean: torch.Tensor,
    dirs: torch.Tensor,
    span: float,
    points: int,
    points2d: int,
    norm: str,
    ctx_noise: float,
) -> Landscape:
    if norm == "filter":
        target = x.norm(dim=-1, keepdim=True)
    else:
        target = torch.full((x.shape[0], 1), ctx_noise * math.sqrt(x.shape[1]), device=x.device)
    d = dirs / dirs.norm(dim=-1, keepdim=True) * target
    group = 16

    def drift(ctxs: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [_half_sq(clean[None], feats(ctxs[i : i + group])).mean(1) for i in range(0, ctxs.shape[0], group)]
        )

    alphas = torch.linspace(-span, span, points, dtype=torch.float64) if points > 1 else torch.zeros(1)
    a = alphas.to(x.device, torch.float32)
    line = drift(x[None] + a[:, None, None] * d[0])
    alphas2d, grid = None, None
    if points2d:
        b = torch.linspace(-span, span, points2d, dtype=torch.float64) if points2d > 1 else torch.zeros(1)
        bb = b.to(x.device, torch.float32)
        ii, jj = torch.meshgrid(bb, bb, indexing="ij")
        ctxs = x[None] + ii.reshape(-1, 1, 1) * d[0] + jj.reshape(-1, 1, 1) * d[1]
        grid = drift(ctxs).view(points2d, points2d).cpu()
        alphas2d = b.tolist()
    return Landscape(norm=norm, alphas=alphas.tolist(), line=line.cpu().tolist(), alphas2d=alphas2d, grid2d=grid)


# -- front door: clip-anytorch models -------------------------------------------------------
def _prompt_ctx(prompt: Any) -> tuple[str, torch.Tensor | str, Any]:
    """``(label, ctx tensor or template text, FPPPrompt or None)`` of any accepted prompt form."""
    from .prompt import FPPPrompt

    if isinstance(prompt, FPPPrompt):
        return ("FPP prompt" if prompt.template is None else f"FPP ({prompt.template!r})"), prompt.ctx, prompt
    if isinstance(prompt, torch.Tensor):
        return "ctx tensor", prompt, None
    if isinstance(prompt, os.PathLike) or (
        isinstance(prompt, str) and prompt.endswith((".safetensors", ".pt", ".pth"))
    ):
        from ._load import load_fpp_prompt

        loaded = load_fpp_prompt(prompt)
        return Path(prompt).stem, loaded.ctx, loaded
    if isinstance(prompt, str):
        return f"template {prompt!r}", prompt, None
    raise PromptShapeError(
        "prompt must be a template string, an FPPPrompt, a prompt file path or a ctx tensor [n_ctx, D]; "
        f"got {type(prompt).__name__}"
    )


def sharpness(
    model: Any,
    prompt: Any = None,
    classnames: Sequence[str] | None = None,
    *,
    reference: str | torch.Tensor | None = None,
    label: str | None = None,
    factors: Sequence[float] = DEFAULT_FACTORS,
    draws: int = 8,
    seed: int = 0,
    ctx_noise: float = C.DEFAULT_CTX_NOISE,
    cls_noise: float = C.DEFAULT_CLS_NOISE,
    landscape: bool = False,
    span: float = 1.0,
    points: int = 21,
    points2d: int = 11,
    direction_norm: str = "filter",
    device: str | torch.device | None = None,
    progress: bool = False,
) -> SharpnessResult:
    """How flat a prompt's text features are: data-free, the quantity FPP optimises.

    Args:
        model: a clip-anytorch CLIP model, a model name or a checkpoint path; or a live
            TPT-family model (what :func:`fpp_init.apply` accepts) or the
            :class:`~fpp_init.FPPHandle` it returned: then the model's own text encoder,
            class set and prompt layout are used (the same path as the adapters).
        prompt: what to measure: a hand-written template (``"a photo of a"``), an
            :class:`~fpp_init.FPPPrompt`, the path of a prompt file, or a ctx tensor ``[n_ctx, D]``.
            For a live model: ``None`` (default) measures its current initial ctx (what
            ``reset()`` restores); templates are not accepted there (pass a tensor).
        classnames: the class set (default: the FPP prompt's own class names). Not for live
            models, which measure their current class set.
        reference: the predefined prompt for the alignment distance: a template string or a
            ctx tensor (default: the FPP prompt's template, else ``"a photo of a"``; for a
            live model: its current initial ctx, or for an ``FPPHandle`` the original one);
            it must have the prompt's ``n_ctx``.
        label: name in tables and plots (default: derived from ``prompt``).
        factors: noise scales, multiples of ``ctx_noise`` / ``cls_noise`` (FPP's defaults).
        draws: noise copies per scale; ``seed``: the private generator's seed.
        landscape: also compute the 1-D / 2-D loss-landscape slice (feature drift along
            random directions, ``span``, ``points``, ``points2d``, ``direction_norm``).
        device: where to compute (default: the model's device).
        progress: show a tqdm bar.

    Returns:
        :class:`SharpnessResult` (``cos_drop`` per factor, ``align``, optional ``landscape``).
        The model's ``requires_grad`` flags and train/eval mode are left as found.
    """
    from ._pretrain import build_text_inputs
    from ._utils import frozen
    from .errors import ClassNameError

    options: dict[str, Any] = dict(
        factors=factors,
        draws=draws,
        seed=seed,
        ctx_noise=ctx_noise,
        cls_noise=cls_noise,
        landscape=landscape,
        span=span,
        points=points,
        points2d=points2d,
        direction_norm=direction_norm,
        progress=progress,
    )
    if _is_live(model):
        return _live_sharpness(model, prompt, classnames, reference, label, device, options)
    if prompt is None:
        raise ConfigError("pass the prompt to measure: a template, an FPPPrompt, a prompt file or a ctx tensor")
    name, source, fpp = _prompt_ctx(prompt)
    if classnames is None:
        if fpp is None or not fpp.classnames:
            raise ClassNameError("classnames is required (the prompt carries no class names)")
        classnames = fpp.classnames
    if reference is None:
        reference = fpp.template if fpp is not None and fpp.template else C.DEFAULT_TEMPLATE
    if isinstance(reference, torch.Tensor):
        inputs = build_text_inputs(model, classnames, predefined_ctx=reference, device=device)
    else:
        inputs = build_text_inputs(model, classnames, template=reference, device=device)
    if isinstance(source, str):  # a template: its token embeddings are the ctx
        ctx = build_text_inputs(inputs.model, classnames[:1], template=source, device=inputs.device).predefined_ctx
    else:
        ctx = source.detach().float().cpu()
    if fpp is not None and fpp.fingerprint and fpp.fingerprint != inputs.tower.fingerprint():
        logger.warning("prompt %s was pretrained for another text tower (fingerprint mismatch)", name)
    with frozen([inputs.model]):
        return measure_sharpness(
            inputs.tower,
            inputs.prompts,
            ctx,
            inputs.predefined_ctx,
            label=label or name,
            device=inputs.device,
            **options,
        )


def _is_live(model: Any) -> bool:
    from .adapters import FPPHandle

    return isinstance(model, FPPHandle) or hasattr(getattr(model, "module", model), "prompt_learner")


def _live_sharpness(
    model: Any,
    prompt: Any,
    classnames: Sequence[str] | None,
    reference: str | torch.Tensor | None,
    label: str | None,
    device: str | torch.device | None,
    options: dict[str, Any],
) -> SharpnessResult:
    """Sharpness on a live TPT-family model, through the adapters' tower and embedded prompts."""
    from ._utils import frozen
    from .adapters import FPPHandle
    from .adapters._families import LiveModel

    original = None
    if isinstance(model, FPPHandle):
        original = model.predefined
        model = model.model
    live = LiveModel(model)
    if classnames is not None:
        raise ConfigError(
            "a live model is measured on its own class set; call its reset_classnames(...) instead of "
            "passing classnames"
        )
    if isinstance(reference, str) or (isinstance(prompt, str) and not prompt.endswith((".safetensors", ".pt", ".pth"))):
        raise ConfigError(
            "templates are not accepted for a live model (its tokenizer is not reachable); pass a ctx "
            "tensor, an FPPPrompt or a prompt file"
        )
    if prompt is None:
        name, ctx = "current init", live.current_init()
    else:
        name, source, _ = _prompt_ctx(prompt)
        ctx = source.detach().float().cpu()  # type: ignore[union-attr]
    if reference is None:
        reference = original if original is not None else live.current_init()
    with frozen([live.text_encoder]):
        tower = live.tower()
        prompts = live.embedded()
        return measure_sharpness(
            tower,
            prompts,
            ctx,
            reference.detach().float().cpu(),
            label=label or name,
            device=device if device is not None else prompts.prefix.device,
            **options,
        )
