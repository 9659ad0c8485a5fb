"""The FPP optimiser. Knows nothing of files, the Hub, clip packages or upstream repos.

Random draws, all from one private CPU ``torch.Generator`` seeded with
``config.seed`` and in this order (so any device gives the same numbers):

1. class-agnostic variant only: the random class tokens, ``randn(C, 2, D)``
   scaled by the embedding std and shifted by its mean;
2. ``init="random"`` only: the start, ``randn(n_ctx, D) * init_std``;
3. at each step: ``randn(K, L, D)``, the ctx positions (``1..n_ctx`` after SOS;
   ``P..P+n_ctx-1`` after a ``P``-token prefix) scaled by ``ctx_noise`` and every
   other position by ``cls_noise``.

Execution (changes no result beyond float rounding, ~1e-7): classes are grouped by
prompt length into chunks of at most ``config.chunk_classes``; each chunk runs only
up to its longest prompt, its ``K`` noisy copies in one batch without autograd, its
clean prompts with autograd, and is backpropagated at once (gradients accumulate over
chunks, so memory is bounded by the chunk). With ``share_prefix`` the prefix + ctx
positions are computed once per noise copy (:meth:`TextTower.encode_shared_prefix`).
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


#: Cost of one more chunk, in sequence positions (its prefix pass and per-call overhead);
#: used only to decide how classes of different prompt lengths are grouped. Measured on
#: CPU; on accelerators a position costs far less than a kernel launch (not measured).
_CHUNK_OVERHEAD = {"cpu": 16}
_CHUNK_OVERHEAD_OTHER = 512


def _plan_chunks(eot: torch.Tensor, start: int, limit: int, overhead: int = 16) -> list[torch.Tensor]:
    """Group classes into chunks of at most ``limit``, by prompt length.

    Each chunk is computed up to its own longest prompt, so classes are sorted by
    EOS position and cut where the padding saved outweighs one more chunk (an
    exact dynamic programme over the sorted lengths). Grouping never changes a
    result: the loss is a sum over classes.
    """
    order = torch.argsort(eot.cpu(), stable=True)
    lengths = (eot.cpu()[order] + 1 - start).tolist()
    n = len(lengths)
    best, cut = [0] + [0] * n, [0] * (n + 1)
    for i in range(1, n + 1):
        cost_i = lengths[i - 1]  # sorted: the chunk (j, i] is as long as its last prompt
        best[i] = -1
        for j in range(max(0, i - limit), i):
            cost = best[j] + (i - j) * cost_i + start + overhead
            if best[i] < 0 or cost < best[i]:
                best[i], cut[i] = cost, j
    bounds, i = [], n
    while i > 0:
        bounds.append((cut[i], i))
        i = cut[i]
    return [order[a:b] for a, b in reversed(bounds)]


class _Encoder:
    """Clean and noisy class features of a chunk, via the fastest exact path."""

    def __init__(self, tower: TextTower, share: bool) -> None:
        self.tower, self.share = tower, share

    @staticmethod
    def _head(ctx: torch.Tensor, ch: EmbeddedPrompts) -> torch.Tensor:
        """``[1, P + n_ctx, D]``: the prefix rows (equal for every class) followed by the ctx."""
        return torch.cat([ch.prefix[0], ctx.to(ch.prefix.dtype)], dim=0)[None]

    def clean(self, ctx: torch.Tensor, ch: EmbeddedPrompts) -> torch.Tensor:
        if self.share:
            return self.tower.encode_shared_prefix(self._head(ctx, ch), ch.suffix[None], ch.eot)[0]
        return self.tower.encode(ch.assemble(ctx), ch.eot)

    def noisy(self, ctx: torch.Tensor, noise: torch.Tensor, ch: EmbeddedPrompts) -> torch.Tensor:
        k, n_pre = noise.shape[0], ch.prefix.shape[1] + ctx.shape[0]
        n = n_pre + ch.suffix.shape[1]
        if self.share:
            head = self._head(ctx, ch) + noise[:, :n_pre]
            rest = ch.suffix[None] + noise[:, None, n_pre:n]
            return self.tower.encode_shared_prefix(head, rest, ch.eot)
        full = ch.assemble(ctx)[None] + noise[:, None, :n]
        return self.tower.encode(full.flatten(0, 1), ch.eot.repeat(k)).view(k, ch.num_classes, -1)


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
        eot=prompts.eot.cpu(),  # the towers read lengths from it without a device sync
    )

    share = tower.supports_shared_prefix and config.share_prefix
    share = share and bool((prompts.prefix == prompts.prefix[:1]).all())
    enc = _Encoder(tower, share)
    chunks = []
    overhead = _CHUNK_OVERHEAD.get(device.type, _CHUNK_OVERHEAD_OTHER)
    for idx in _plan_chunks(prompts.eot, n_pre + n_ctx, config.chunk_classes, overhead):
        eot = prompts.eot[idx]
        keep = int(eot.max()) + 1 - n_pre - n_ctx
        rows = idx.to(device)
        chunks.append(EmbeddedPrompts(prompts.prefix[rows], prompts.suffix[rows, :keep], eot))
    amp = _autocast(config, device, tower.dtype)

    predefined = predefined_ctx.detach().float().to(device)
    with torch.no_grad(), amp:
        targets = [_normalize(enc.clean(predefined, ch)) for ch in chunks]

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
        totals = torch.zeros(2, device=device)
        for ch, target in zip(chunks, targets, strict=True):
            with amp:
                clean = _normalize(enc.clean(ctx, ch))
            if noiseless:  # F~ = F exactly; recomputing would only add rounding noise
                noisy = clean.detach()[None]
            else:
                with torch.no_grad(), amp:
                    noisy = _normalize(enc.noisy(ctx, noise, ch))
            align = ((clean - target) ** 2).sum() / c
            # mean cos(F, F~) written as 1 - |F - F~|^2 / 2 (equal for unit vectors): its gradient
            # vanishes exactly where F~ = F, and it avoids cancellation for cosines near 1
            # (summed over chunks: this chunk's share of 1 - mean cos)
            gap = 0.5 * ((clean[None] - noisy) ** 2).sum(-1).mean(0).sum() / c
            (align + lam * gap).backward()  # the gradient of align - lam * cos
            totals += torch.stack([align.detach(), gap.detach()])
        opt.step()
        sched.step()
        records.append(totals)
        if progress and (step % every == 0 or step == config.steps - 1):
            a, gap = totals.tolist()
            f = -lam * (1 - gap)
            bar.set_postfix(align=f"{a:.4f}", flat=f"{f:.4f}", loss=f"{a + f:.4f}")
    bar.close()

    history: dict[str, list[float]] = {"align": [], "flat": [], "loss": [], "cos": []}
    if records:
        a, gap = torch.stack(records).double().cpu().unbind(1)
        cs = 1 - gap
        f = -lam * cs
        history = {"align": a.tolist(), "flat": f.tolist(), "loss": (a + f).tolist(), "cos": cs.tolist()}
        logger.info("FPP done: %d steps, final align %.5f flat %.5f", config.steps, a[-1], f[-1])
    return FPPResult(ctx=ctx.detach().float().cpu().clone(), flat_weight=lam, history=history)
