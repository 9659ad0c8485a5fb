"""The FPP optimiser. Knows nothing of files, the Hub, clip packages or upstream repos.

Random draws, all from one private CPU ``torch.Generator`` seeded with
``config.seed`` and in this order (so any device gives the same numbers):

1. class-agnostic variant only: the random class tokens, ``randn(C, 2, D)``
   scaled by the embedding std and shifted by its mean;
2. ``init="random"`` only: the start, ``randn(n_ctx, D) * init_std``;
3. at each step: ``randn(K, L, D)``, the ctx positions (``1..n_ctx`` after SOS;
   ``P..P+n_ctx-1`` after a ``P``-token prefix) scaled by ``ctx_noise`` and every
   other position by ``cls_noise``.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .config import FPPConfig
from .errors import PromptShapeError
from .towers import TextTower

logger = logging.getLogger(__name__)

__all__ = ["EmbeddedPrompts", "FPPResult", "optimize_flat_prompt", "draw_noise"]


@dataclass
class EmbeddedPrompts:
    """Token embeddings of ``C`` prompts ``[SOS] ctx_1..ctx_n [CLASS] . [EOS]``, minus the ctx.

    Attributes:
        prefix: ``[C, P, D]`` embeddings before the ctx (SOS, plus any fixed leading
            template words; the ctx starts at position ``P``, usually 1).
        suffix: ``[C, S, D]`` embeddings after the ctx (class, ``.``, EOS, padding).
        eot: ``[C]`` absolute EOS positions.
    """

    prefix: torch.Tensor
    suffix: torch.Tensor
    eot: torch.Tensor

    @property
    def num_classes(self) -> int:
        return self.prefix.shape[0]

    def assemble(self, ctx: torch.Tensor, idx: slice = slice(None)) -> torch.Tensor:
        p, s = self.prefix[idx], self.suffix[idx]
        return torch.cat([p, ctx.to(p.dtype)[None].expand(p.shape[0], -1, -1), s], dim=1)


@dataclass
class FPPResult:
    ctx: torch.Tensor
    flat_weight: float
    history: dict[str, list[float]] = field(default_factory=dict)

    @property
    def final_losses(self) -> dict[str, float]:
        return {k: v[-1] for k, v in self.history.items() if v}


def draw_noise(
    generator: torch.Generator, config: FPPConfig, n_ctx: int, length: int, width: int, start: int = 1
) -> torch.Tensor:
    """One step's noise ``[K, L, D]`` (shared by all classes of a copy), as the spec draws it.

    The ctx occupies positions ``start .. start + n_ctx - 1`` (``start`` = prefix length, 1 = SOS only).
    """
    noise = torch.randn(config.num_noise, length, width, generator=generator)
    scale = torch.full((length, 1), float(config.cls_noise))
    scale[start : start + n_ctx] = float(config.ctx_noise)
    return noise * scale


def _autocast(
    config: FPPConfig, device: torch.device, tower_dtype: torch.dtype
) -> contextlib.AbstractContextManager[None]:
    mode = config.autocast
    if mode == "auto":
        mode = "fp16" if device.type == "cuda" and tower_dtype == torch.float32 else "off"
    if mode == "off":
        return contextlib.nullcontext()
    dtype = torch.float16 if mode == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    x = x.float()
    return x / x.norm(dim=-1, keepdim=True)


class _Encoder:
    """Clean and noisy class features of a chunk, via the fastest exact path."""

    def __init__(self, tower: TextTower, prompts: EmbeddedPrompts, share: bool) -> None:
        self.tower, self.prompts, self.share = tower, prompts, share

    def clean(self, ctx: torch.Tensor, idx: slice) -> torch.Tensor:
        p = self.prompts
        if self.share:
            head = torch.cat([p.prefix[0], ctx.to(p.prefix.dtype)], dim=0)[None]
            return self.tower.encode_shared_prefix(head, p.suffix[None, idx], p.eot[idx])[0]
        return self.tower.encode(p.assemble(ctx, idx), p.eot[idx])

    def noisy(self, ctx: torch.Tensor, noise: torch.Tensor, idx: slice) -> torch.Tensor:
        p = self.prompts
        k, n_pre = noise.shape[0], p.prefix.shape[1] + ctx.shape[0]
        if self.share:
            head = torch.cat([p.prefix[0], ctx.to(p.prefix.dtype)], dim=0)[None] + noise[:, :n_pre]
            rest = p.suffix[None, idx] + noise[:, None, n_pre:]
            return self.tower.encode_shared_prefix(head, rest, p.eot[idx])
        full = p.assemble(ctx, idx)[None] + noise[:, None]
        c = full.shape[1]
        return self.tower.encode(full.flatten(0, 1), p.eot[idx].repeat(k)).view(k, c, -1)


def optimize_flat_prompt(
    tower: TextTower,
    prompts: EmbeddedPrompts,
    predefined_ctx: torch.Tensor,
    config: FPPConfig,
    *,
    init_ctx: torch.Tensor | None = None,
    random_class_tokens: tuple[float, float] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> FPPResult:
    """Run FPP on embedded prompts; return the pretrained ctx ``[n_ctx, D]`` (fp32, CPU).

    Args:
        tower: the text tower; its weights must already be frozen by the caller.
        prompts: the embedded prompts of the class set (ctx positions left out).
        predefined_ctx: ``[n_ctx, D]`` ctx the features must stay aligned with.
        config: hyperparameters.
        init_ctx: explicit start (overrides ``config.init``).
        random_class_tokens: ``(mean, std)`` of the token embedding matrix: run the
            class-agnostic variant (the two positions after the ctx are replaced by
            random vectors per class).
        device: where to compute.
        progress: show a tqdm bar with the current losses.
    """
    device = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(config.seed)
    n_ctx, width = predefined_ctx.shape
    c = prompts.num_classes
    length = tower.context_length
    if width != tower.width:
        raise PromptShapeError(f"ctx width {width} does not match the text tower's width {tower.width}")

    suffix = prompts.suffix.detach().float().clone()
    if random_class_tokens is not None:
        mean, std = random_class_tokens
        suffix[:, :2] = torch.randn(c, 2, width, generator=gen) * std + mean
    n_used = int(prompts.eot.max()) + 1  # positions after the last EOS never matter
    n_pre = prompts.prefix.shape[1]  # the ctx starts here (1: SOS only)
    prompts = EmbeddedPrompts(
        prefix=prompts.prefix.detach().float().to(device),
        suffix=suffix[:, : n_used - n_pre - n_ctx].to(device),
        eot=prompts.eot.to(device),
    )

    share = bool(getattr(tower, "supports_shared_prefix", False)) and config.share_prefix
    share = share and bool((prompts.prefix == prompts.prefix[:1]).all())
    enc = _Encoder(tower, prompts, share)
    chunks = [slice(i, min(i + config.chunk_classes, c)) for i in range(0, c, config.chunk_classes)]
    amp = _autocast(config, device, tower.dtype)

    predefined = predefined_ctx.detach().float().to(device)
    with torch.no_grad(), amp:
        target = torch.cat([_normalize(enc.clean(predefined, idx)) for idx in chunks])

    if init_ctx is not None:
        start = init_ctx.detach().float().cpu()
    elif config.init == "random":
        start = torch.randn(n_ctx, width, generator=gen) * config.init_std
    else:
        start = predefined.cpu()
    ctx = torch.nn.Parameter(start.clone().to(device))
    opt = torch.optim.AdamW([ctx], lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(config.steps, 1), eta_min=config.min_lr)
    lam = config.resolved_flat_weight(c)
    noiseless = config.ctx_noise == 0 and config.cls_noise == 0

    records: list[torch.Tensor] = []
    bar = tqdm(range(config.steps), desc="FPP", disable=not progress, leave=False, dynamic_ncols=True)
    every = max(1, config.steps // 100)
    for step in bar:
        noise = draw_noise(gen, config, n_ctx, length, width, n_pre)[:, :n_used].to(device)
        opt.zero_grad(set_to_none=True)
        totals = torch.zeros(3, device=device)
        for idx in chunks:
            with amp:
                clean = _normalize(enc.clean(ctx, idx))
            if noiseless:  # F~ = F exactly; recomputing would only add rounding noise
                noisy = clean.detach()[None]
            else:
                with torch.no_grad(), amp:
                    noisy = _normalize(enc.noisy(ctx, noise, idx))
            align = ((clean - target[idx]) ** 2).sum() / c
            # mean cos(F, F~) written as 1 - |F - F~|^2 / 2 (equal for unit vectors): its gradient
            # vanishes exactly where F~ = F, and it avoids cancellation for cosines near 1
            cos = 1 - 0.5 * ((clean[None] - noisy) ** 2).sum(-1).mean(0).sum() / c
            (align - lam * cos).backward()
            totals += torch.stack([align.detach(), -lam * cos.detach(), cos.detach()])
        opt.step()
        sched.step()
        records.append(totals)
        if progress and (step % every == 0 or step == config.steps - 1):
            a, f, _ = totals.tolist()
            bar.set_postfix(align=f"{a:.4f}", flat=f"{f:.4f}", loss=f"{a + f:.4f}")
    bar.close()

    history: dict[str, list[float]] = {"align": [], "flat": [], "loss": [], "cos": []}
    if records:
        a, f, cs = torch.stack(records).double().cpu().unbind(1)
        history = {"align": a.tolist(), "flat": f.tolist(), "loss": (a + f).tolist(), "cos": cs.tolist()}
        logger.info("FPP done: %d steps, final align %.5f flat %.5f", config.steps, a[-1], f[-1])
    return FPPResult(ctx=ctx.detach().float().cpu().clone(), flat_weight=lam, history=history)
