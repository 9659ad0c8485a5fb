"""The FPP optimiser. Knows nothing of files, the Hub, CLIP libraries or upstream repositories.

Random draws, all from one private CPU ``torch.Generator`` seeded with ``config.seed`` and in
this order (so any device, and any number of ranks, gives the same numbers):

1. class-agnostic variant only: the random class tokens, ``randn(C, 2, D)`` scaled by the
   embedding std and shifted by its mean;
2. ``init="random"`` only: the start, ``randn(n_ctx, D) * init_std``;
3. at each step: :func:`~fpp_init.algorithm.noise.draw_noise` over the rows the prompts use
   (up to the last EOS of the class set).

Precision: the run works in fp32 (the ctx, AdamW's state, the prompts, the losses), in fp64 when
the tower's weights are fp64 (a reference trajectory without fp32 rounding); the result is fp32.

Execution (changes no result beyond float rounding, ~1e-7): classes are grouped by prompt
length into chunks of at most ``config.chunk_classes``; each chunk runs only up to its longest
prompt, its ``K`` noisy copies in one batch without autograd, its clean prompts with
autograd, and is backpropagated at once (gradients accumulate over chunks, so memory is
bounded by the chunk). With a :class:`Shard`, each rank computes its share of the classes and
the ctx gradient and losses are summed across ranks once per step; every rank then takes the
same optimiser step. A :class:`Checkpointing` object saves and restores the run's state.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from .. import constants as const
from ..config import FPPConfig
from ..errors import FPPWarning, LongRunWarning, NonFiniteError, PromptShapeError
from ..towers import TextTower
from .embedded import EmbeddedPrompts, shard_classes
from .features import ClassFeatures
from .noise import draw_noise

logger = logging.getLogger(__name__)

__all__ = ["FPPResult", "Shard", "TrainState", "Checkpointing", "optimize_flat_prompt", "initial_ctx"]


@dataclass
class FPPResult:
    """What one optimisation produced: the ctx ``[n_ctx, D]`` (fp32, CPU), λ and the per-step losses."""

    ctx: torch.Tensor
    flat_weight: float
    history: dict[str, list[float]] = field(default_factory=dict)

    @property
    def final_losses(self) -> dict[str, float]:
        return {k: v[-1] for k, v in self.history.items() if v}


@dataclass(frozen=True)
class Shard:
    """This process's part of a class-sharded run: ``reduce`` sums a tensor over all ranks in place."""

    rank: int
    world: int
    reduce: Callable[[torch.Tensor], None]


@dataclass
class TrainState:
    """Everything needed to continue a run exactly: after ``step`` completed steps."""

    step: int
    ctx: torch.Tensor
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    generator: torch.Tensor
    records: torch.Tensor  # [step, 2]: (alignment loss, 1 - mean cos) per step


class Checkpointing(Protocol):
    """Where a run's state goes; the algorithm only calls these."""

    every: int

    def load(self) -> TrainState | None: ...

    def save(self, state: TrainState) -> None: ...


def _autocast(
    config: FPPConfig, device: torch.device, tower_dtype: torch.dtype
) -> contextlib.AbstractContextManager[Any]:
    mode = config.autocast
    if mode == "auto":
        mode = "fp16" if device.type == "cuda" and tower_dtype == torch.float32 else "off"
    if mode == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.float16 if mode == "fp16" else torch.bfloat16)


def working_dtype(tower_dtype: torch.dtype) -> torch.dtype:
    """The precision of a run on a tower with weights of ``tower_dtype``: fp64 for fp64, else fp32."""
    return torch.float64 if tower_dtype == torch.float64 else torch.float32


def initial_ctx(
    config: FPPConfig, predefined: torch.Tensor, generator: torch.Generator, init_ctx: torch.Tensor | None
) -> torch.Tensor:
    """The start ``[n_ctx, D]`` (fp32, CPU): ``init_ctx``, a random draw, or the predefined ctx."""
    if init_ctx is not None:
        return init_ctx.detach().float().cpu().clone()
    if config.init == "random":
        return torch.randn(*predefined.shape, generator=generator) * config.init_std
    return predefined.detach().float().cpu().clone()


def _work_prompts(
    prompts: EmbeddedPrompts,
    n_ctx: int,
    generator: torch.Generator,
    class_tokens: tuple[float, float] | None,
    dtype: torch.dtype,
) -> EmbeddedPrompts:
    """Prompts in the run's precision, cut after the last EOS; the class-agnostic variant's random class
    tokens drawn in."""
    suffix = prompts.suffix.detach().to(dtype)
    if class_tokens is not None:
        mean, std = class_tokens
        suffix = suffix.clone()
        suffix[:, :2] = torch.randn(prompts.num_classes, 2, suffix.shape[-1], generator=generator) * std + mean
    keep = prompts.used_length - prompts.ctx_start - n_ctx
    return EmbeddedPrompts(prompts.prefix.detach().to(dtype), suffix[:, :keep], prompts.eot_pos.cpu())


def _history(records: torch.Tensor, lam: float) -> dict[str, list[float]]:
    align, gap = records.double().unbind(1)
    cos = 1 - gap
    flat = -lam * cos
    return {"align": align.tolist(), "flat": flat.tolist(), "loss": (align + flat).tolist(), "cos": cos.tolist()}


def _check_finite(records: list[torch.Tensor], first_step: int, ctx: torch.Tensor, config: FPPConfig) -> None:
    """One device sync: raise :class:`NonFiniteError` naming the first step whose losses are NaN/Inf."""
    if not records:
        return
    stacked = torch.stack(records)
    if bool(torch.isfinite(stacked).all()) and bool(torch.isfinite(ctx).all()):
        return
    bad = (~torch.isfinite(stacked).all(dim=1)).nonzero()
    step = first_step + (int(bad[0]) if len(bad) else len(records) - 1)
    raise NonFiniteError(
        f"FPP diverged: the loss or the ctx became NaN/Inf at step {step + 1} of {config.steps} (lr={config.lr}); "
        "lower lr (or an extreme ctx_noise, cls_noise, flat_weight or init_std), or check the text tower for "
        "non-finite weights. Nothing was returned or saved"
    )


class _Run:
    """One FPP optimisation: the prepared chunks and targets, the optimiser, the step."""

    def __init__(
        self,
        tower: TextTower,
        prompts: EmbeddedPrompts,
        predefined_ctx: torch.Tensor,
        config: FPPConfig,
        init_ctx: torch.Tensor | None,
        class_tokens: tuple[float, float] | None,
        device: torch.device,
        shard: Shard | None,
    ) -> None:
        self.config, self.device, self.shard = config, device, shard if shard is not None and shard.world > 1 else None
        n_ctx, width = predefined_ctx.shape
        if width != tower.width:
            raise PromptShapeError(f"ctx width {width} does not match the text tower's width {tower.width}")
        self.generator = torch.Generator(device="cpu").manual_seed(config.seed)
        self.dtype = working_dtype(tower.dtype)
        work = _work_prompts(prompts, n_ctx, self.generator, class_tokens, self.dtype)
        start = initial_ctx(config, predefined_ctx, self.generator, init_ctx)
        self.num_classes, self.length, self.ctx_start, self.n_ctx, self.width = (
            work.num_classes, work.used_length, work.ctx_start, n_ctx, width,
        )  # fmt: skip
        mine: EmbeddedPrompts | None = work  # None: a rank without classes
        if self.shard is not None:  # this rank's classes only; the noise is drawn for the whole set
            local = shard_classes(work.eot_pos + 1, self.shard.rank, self.shard.world)
            mine = work.select(local, n_ctx) if len(local) else None
        self.features = None if mine is None else ClassFeatures(
            tower, mine, n_ctx, chunk_classes=config.chunk_classes, share_prefix=config.share_prefix, device=device
        )  # fmt: skip
        self.chunks = [] if self.features is None else self.features.chunks
        self.amp = _autocast(config, device, tower.dtype)
        predefined = predefined_ctx.detach().to(device, self.dtype)
        features = self.features
        with torch.no_grad(), self.amp:
            self.targets = [] if features is None else [features(ch, predefined[None])[0] for ch in self.chunks]
        if not all(bool(torch.isfinite(t).all()) for t in self.targets):
            raise NonFiniteError(
                "the text tower produces NaN/Inf features for the predefined prompt: the model's weights (or the "
                "prompt embeddings) contain NaN/Inf; check the checkpoint"
            )
        self.ctx = torch.nn.Parameter(start.to(device, self.dtype))
        self.opt = torch.optim.AdamW([self.ctx], lr=config.lr, weight_decay=config.weight_decay)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=config.steps, eta_min=config.min_lr)
        self.flat_weight = config.resolved_flat_weight(self.num_classes)
        self.noiseless = config.ctx_noise == 0 and config.cls_noise == 0
        self.records: list[torch.Tensor] = []  # (align, 1 - mean cos) of every completed step
        self.resume_generator = self.generator.get_state()  # the generator after len(records) steps
        self.stepping = False

    def restore(self, state: TrainState) -> None:
        with torch.no_grad():
            self.ctx.copy_(state.ctx.to(self.device, self.dtype))
        self.opt.load_state_dict(state.optimizer)
        self.sched.load_state_dict(state.scheduler)
        self.generator.set_state(state.generator)
        self.resume_generator = state.generator
        self.records = [r.to(self.device) for r in state.records.float()]

    def snapshot(self) -> TrainState:
        done = len(self.records)
        rec = torch.stack(self.records).cpu() if done else torch.zeros(0, 2)
        return TrainState(
            done, self.ctx.detach().cpu().clone(), self.opt.state_dict(), self.sched.state_dict(),
            self.resume_generator, rec,
        )  # fmt: skip

    def _losses(self, noise: torch.Tensor) -> torch.Tensor:
        """Accumulate this step's gradient over the chunks; the summed (align, 1 - mean cos)."""
        cfg, feats, c = self.config, self.features, self.num_classes
        totals = torch.zeros(2, device=self.device, dtype=self.dtype)
        if feats is None:  # a rank without classes (no chunks): nothing to accumulate
            return totals
        for chunk, target in zip(self.chunks, self.targets, strict=True):
            with self.amp:
                clean = feats(chunk, self.ctx[None])[0]
            if self.noiseless:  # F~ = F exactly; recomputing would only add rounding noise
                noisy = clean.detach()[None]
            else:
                with torch.no_grad(), self.amp:
                    variants = self.ctx.detach()[None].expand(cfg.num_noise, -1, -1)
                    noisy = feats(chunk, variants, noise)
            align = ((clean - target) ** 2).sum() / c
            # mean cos(F, F~) written as 1 - |F - F~|^2 / 2 (equal for unit vectors): its gradient
            # vanishes exactly where F~ = F, and it avoids cancellation for cosines near 1
            # (summed over chunks: this chunk's share of 1 - mean cos)
            gap = 0.5 * ((clean[None] - noisy) ** 2).sum(-1).mean(0).sum() / c
            (align + self.flat_weight * gap).backward()  # the gradient of align - lam * cos
            totals += torch.stack([align.detach(), gap.detach()])
        return totals

    def step(self) -> torch.Tensor:
        """One FPP step; returns its (align, 1 - mean cos) on the device (no sync)."""
        cfg = self.config
        noise = draw_noise(
            self.generator, cfg.num_noise, self.length, self.width, ctx_start=self.ctx_start, n_ctx=self.n_ctx,
            ctx_noise=cfg.ctx_noise, cls_noise=cfg.cls_noise,
        ).to(self.device, self.dtype)  # fmt: skip
        self.opt.zero_grad(set_to_none=True)
        totals = self._losses(noise)
        if self.shard is not None:  # one all_reduce: this rank's gradient share and loss sums
            grad = self.ctx.grad if self.ctx.grad is not None else torch.zeros_like(self.ctx)  # a rank without classes
            both = torch.cat([grad.flatten(), totals])
            self.shard.reduce(both)
            self.ctx.grad = both[:-2].view_as(self.ctx).clone()
            totals = both[-2:].clone()
        self.stepping = True  # an interruption now would leave a half-updated state
        try:
            self.opt.step()
        except RuntimeError as exc:  # lr / (1 - beta1^t) or 1 - lr * weight_decay beyond fp32
            if "overflow" not in str(exc):
                raise
            raise NonFiniteError(
                f"FPP diverged: the AdamW update overflows fp32 at step {len(self.records) + 1} of {cfg.steps} "
                f"(lr={cfg.lr}, weight_decay={cfg.weight_decay}); lower lr. Nothing was returned or saved"
            ) from None
        self.sched.step()
        self.records.append(totals)
        self.resume_generator = self.generator.get_state()
        self.stepping = False
        return totals

    def check_finite(self, since: int) -> None:
        _check_finite(self.records[since:], since, self.ctx, self.config)

    def result(self) -> FPPResult:
        history = _history(torch.stack(self.records).cpu(), self.flat_weight)
        return FPPResult(ctx=self.ctx.detach().float().cpu().clone(), flat_weight=self.flat_weight, history=history)


class _Clock:
    """When to refresh the losses beside the bar, and a warning with the estimated time of a run asked for
    far more steps than the paper's."""

    SHOW_EVERY_S = 0.5
    ESTIMATE_AFTER = 3  # steps timed before estimating (after the first one, which warms up)
    WARN_ABOVE_S = 3600.0  # a long run that ends within the hour is not worth a warning

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.next_show = 0.0
        self.started: float | None = None
        self.estimated = steps <= const.LONG_RUN_STEPS

    def show_losses(self, done: int) -> bool:
        now = time.monotonic()
        if now < self.next_show and done != self.steps:
            return False
        self.next_show = now + self.SHOW_EVERY_S
        return True

    def tick(self, done: int, totals: torch.Tensor) -> None:
        if self.estimated:
            return
        if self.started is None:  # after the first step of this process (compilation, caches)
            totals.sum().item()  # (a device sync: the time is the steps', not their launch's)
            self.started, self.since = time.monotonic(), done
            return
        if done - self.since < self.ESTIMATE_AFTER and done != self.steps:
            return
        totals.sum().item()
        per_step = (time.monotonic() - self.started) / (done - self.since)
        self.estimated = True
        if per_step * (self.steps - done) < self.WARN_ABOVE_S:
            return
        warnings.warn(
            f"steps={self.steps} will take about {_duration(per_step * (self.steps - done))} more at "
            f"{per_step:.3g} s per step (the paper uses {const.DEFAULT_STEPS} steps); interrupt and ask for fewer "
            "steps unless you mean it",
            LongRunWarning,
            stacklevel=3,
        )


def _duration(seconds: float) -> str:
    """``42 s``, ``17 min``, ``5.2 h``, ``3.1 days``, ``31.7 years``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    if seconds < 2 * 365.25 * 86400:
        return f"{seconds / 86400:.1f} days"
    return f"{seconds / (365.25 * 86400):.3g} years"


def optimize_flat_prompt(
    tower: TextTower,
    prompts: EmbeddedPrompts,
    predefined_ctx: torch.Tensor,
    config: FPPConfig,
    *,
    init_ctx: torch.Tensor | None = None,
    random_class_tokens: tuple[float, float] | None = None,
    device: torch.device | None = None,
    progress: bool = True,
    shard: Shard | None = None,
    checkpoint: Checkpointing | None = None,
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
        device: where to compute (default: the tower's device).
        progress: show a tqdm bar with the current losses.
        shard: compute only this rank's classes and sum gradients across ranks.
        checkpoint: save the state every ``checkpoint.every`` steps, at the end and when
            interrupted (SIGINT, or SIGTERM where it raises), and continue from a saved state.
    """
    run = _Run(tower, prompts, predefined_ctx, config, init_ctx, random_class_tokens, device or tower.device, shard)
    state = checkpoint.load() if checkpoint is not None else None
    if state is not None:
        run.restore(state)
        logger.info("FPP resumed after step %d of %d", state.step, config.steps)
    first = len(run.records)
    checked = first
    # the bar counts every step of the run, so a resumed run shows where it stands (141/1500, not 0/1359)
    desc = f"FPP (resumed after step {first})" if first else "FPP"
    bar = tqdm(total=config.steps, initial=first, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    clock = _Clock(config.steps)
    try:
        for step in range(first, config.steps):
            totals = run.step()
            done = step + 1
            bar.update()
            if done - checked >= const.FINITE_CHECK_EVERY or done == config.steps:
                run.check_finite(checked)
                checked = done
            # the final state too: the caller removes it only once the result is safely handed over
            if checkpoint is not None and (done % checkpoint.every == 0 or done == config.steps):
                checkpoint.save(run.snapshot())
            clock.tick(done, totals)
            if progress and clock.show_losses(done):  # by time, not by step count: fresh on any --steps
                a, cos = totals[0].item(), 1 - totals[1].item()
                lam = run.flat_weight
                bar.set_postfix(align=f"{a:.4f}", flat=f"{-lam * cos:.4f}", loss=f"{a - lam * cos:.4f}", refresh=False)
    except (KeyboardInterrupt, SystemExit):
        # outside opt.step() a step is either complete (recorded) or has left no trace in ctx,
        # optimiser and scheduler: snapshot() then describes exactly the completed steps
        if checkpoint is not None and len(run.records) > first and not run.stepping:
            run.check_finite(checked)
            checkpoint.save(run.snapshot())
            warnings.warn(  # the user acts on it: run again to resume
                f"interrupted after step {len(run.records)}; checkpoint written: run the same call again to resume",
                FPPWarning,
                stacklevel=2,
            )
        raise
    finally:
        bar.close()
    result = run.result()
    logger.info(
        "FPP done: %d steps, final align %.5f, flat %.5f",
        config.steps,
        result.history["align"][-1],
        result.history["flat"][-1],
    )
    return result
