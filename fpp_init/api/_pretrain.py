"""``pretrain_flat_prompt``: the FPP algorithm for any CLIP model, name or checkpoint."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import constants as const
from .._io import check_writable_file
from .._runtime import cpu_threads, frozen
from .._validate import check_bool, check_cache, check_classnames, check_ctx, check_int, check_path
from ..algorithm import FPPResult, optimize_flat_prompt
from ..artifacts import FPPPrompt
from ..artifacts.cache import PromptCache
from ..artifacts.identity import RunIdentity
from ..config import FPPConfig, as_config
from ..errors import ClassNameError, ConfigError
from ..models import ClassPrompts, TextModel, build_class_prompts, text_model
from . import _distributed
from ._checkpoint import FileCheckpoint

logger = logging.getLogger(__name__)

__all__ = ["pretrain_flat_prompt", "fingerprint_model", "prompt_from_result"]


def fingerprint_model(model: Any) -> str:
    """Fingerprint of a CLIP model's text tower: the same for the same weights in clip-anytorch,
    OpenCLIP or transformers, fp16 or fp32, on any device."""
    return text_model(model).fingerprint()


def prompt_from_result(result: FPPResult, config: FPPConfig, **meta: Any) -> FPPPrompt:
    """The :class:`FPPPrompt` of an optimiser run: its ctx, history and final losses, the config
    with the ``flat_weight`` actually used, and the provenance fields in ``meta``."""
    return FPPPrompt(
        ctx=result.ctx,
        config={**config.to_dict(), "flat_weight": result.flat_weight},
        final_losses=result.final_losses,
        history=result.history,
        **meta,
    )


def _class_set(classnames: Any, class_agnostic: bool, num_classes: Any) -> tuple[list[str] | None, int]:
    """``(names or None, class count)`` from the three ways a class set can be asked for."""
    if class_agnostic:
        if classnames is not None:
            raise ConfigError("pass either classnames or class_agnostic=True, not both", param="classnames")
        n = const.DEFAULT_AGNOSTIC_CLASSES if num_classes is None else num_classes
        return None, check_int(n, "num_classes", min=1, max=const.MAX_NUM_CLASSES)
    if classnames is None:
        raise ClassNameError("classnames is required (or pass class_agnostic=True)")
    if num_classes is not None:
        raise ConfigError(
            "num_classes is only for class_agnostic=True; it follows from classnames", param="num_classes"
        )
    names = check_classnames(classnames)
    return names, len(names)


def _embedding_stats(tm: TextModel) -> tuple[float, float]:
    weight = tm.token_embedding.detach().float()
    return float(weight.mean()), float(weight.std())


def pretrain_flat_prompt(
    model: nn.Module | str | os.PathLike[str] = const.DEFAULT_ARCH,
    classnames: Sequence[str] | None = None,
    *,
    class_agnostic: bool = False,
    num_classes: int | None = None,
    template: str = const.DEFAULT_TEMPLATE,
    predefined_ctx: torch.Tensor | None = None,
    init_ctx: torch.Tensor | None = None,
    config: FPPConfig | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    cache: bool | str | os.PathLike[str] = False,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = const.DEFAULT_CHECKPOINT_EVERY,
    distributed: bool | None = None,
    **config_fields: Any,
) -> FPPPrompt:
    """Pretrain flat context vectors for a CLIP model (FPP, CVPR 2026).

    Args:
        model: a CLIP model object (clip-anytorch, OpenCLIP, transformers), a clip-anytorch
            name (``"ViT-B/16"``; downloaded by ``clip.load``), the path of a CLIP checkpoint,
            ``"open_clip:ARCH/PRETRAINED"`` or ``"hf:ORG/REPO"``.
        classnames: the target label set (``_`` becomes a space in prompts).
        class_agnostic: pretrain with random class tokens instead (one prompt for any
            class set); ``classnames`` must then be ``None``.
        num_classes: classes simulated by the class-agnostic variant (default 100).
        template: the hand-written prompt to stay aligned with; ``n_ctx`` is its token
            count (a count other than TPT's 4 warns). The class name always goes at the end.
        predefined_ctx: a soft prompt ``[n_ctx, D]`` (e.g. CoOp) to align with instead
            of the template's embeddings.
        init_ctx: an explicit start ``[n_ctx, D]`` (overrides ``config.init``).
        config: hyperparameters (:class:`FPPConfig`, or a dict of its fields); keyword
            ``config_fields`` (FPPConfig fields as keywords) override its fields, e.g. ``steps=200, seed=1``.
        device: where to compute; defaults to the model's device (or CUDA if available
            when loading by name).
        progress: show a tqdm bar with the current losses.
        cache: reuse a prompt pretrained earlier with the same text tower, class names,
            template and config: ``True`` for the default cache folder, or a folder.
            The returned prompt's ``cache_entry`` says when it came from the cache.
        checkpoint: a file to save the run's state in every ``checkpoint_every`` steps (and
            when interrupted); calling again with the same inputs resumes from it and gives
            the result of an uninterrupted run. Removed after a successful run.
        distributed: shard the classes over the ranks of ``torch.distributed`` (``None``:
            when a process group with more than one rank exists or ``torchrun`` set
            ``WORLD_SIZE > 1``); every rank returns the same prompt.

    Returns:
        The :class:`FPPPrompt` (ctx ``[n_ctx, D]`` fp32 on CPU, metadata, loss history).
    """
    cfg = as_config(config, config_fields)
    check_bool(class_agnostic, "class_agnostic")
    check_bool(progress, "progress")
    names, n = _class_set(classnames, class_agnostic, num_classes)
    cache_dir = check_cache(cache)
    check_int(checkpoint_every, "checkpoint_every", min=1)
    ckpt_path = None if checkpoint is None else check_writable_file(check_path(checkpoint, "checkpoint"), "checkpoint")
    if distributed is not None:
        check_bool(distributed, "distributed")
    if device is None and distributed is not False and isinstance(model, (str, os.PathLike)):
        device = _distributed.local_device()  # one GPU per rank under torchrun
    tm = text_model(model, device=device)
    classes = build_class_prompts(
        tm,
        names,
        num_classes=n,
        template=None if predefined_ctx is not None else template,
        predefined_ctx=predefined_ctx,
    )
    if init_ctx is not None:
        init_ctx = check_ctx(init_ctx, "init_ctx", width=tm.width, n_ctx=classes.n_ctx).float().cpu()
    identity = RunIdentity(tm.fingerprint(), names, n, classes.template, classes.predefined_ctx, init_ctx, cfg)
    run = _Job(tm, classes, identity, init_ctx, progress, cache_dir, ckpt_path, checkpoint_every)
    with _distributed.session(distributed, tm.device, cfg.dist_timeout) as group:
        return run(group)


class _Job:
    """One pretraining once everything is validated: the cache, then the optimiser (sharded and
    checkpointed as asked), then the prompt with its provenance."""

    def __init__(
        self,
        tm: TextModel,
        classes: ClassPrompts,
        identity: RunIdentity,
        init_ctx: torch.Tensor | None,
        progress: bool,
        cache_dir: Path | None,
        checkpoint: Path | None,
        checkpoint_every: int,
    ) -> None:
        self.tm, self.classes, self.identity, self.init_ctx = tm, classes, identity, init_ctx
        self.progress, self.cache_dir = progress, cache_dir
        self.checkpoint, self.checkpoint_every = checkpoint, checkpoint_every

    def __call__(self, group: _distributed.Group | None) -> FPPPrompt:
        writer = group is None or group.rank == 0
        if group is not None:
            group.check_same(self.identity.key, "inputs (model weights, class names, template, config)")
        cache = PromptCache(self.cache_dir) if self.cache_dir is not None and writer else None
        hit = cache.lookup(self.identity) if cache is not None else None
        if group is not None:
            hit = group.broadcast(hit)
        if hit is not None:
            return hit
        ckpt = None
        if self.checkpoint is not None:
            ckpt = FileCheckpoint(
                self.checkpoint, self.identity.key, self.identity.config.steps, self.checkpoint_every, group
            )
        prompt = self._optimize(group, ckpt, writer)
        if cache is not None:
            cache.store(self.identity, prompt)
        if ckpt is not None:
            ckpt.finish()
        return prompt

    def _optimize(self, group: _distributed.Group | None, ckpt: FileCheckpoint | None, writer: bool) -> FPPPrompt:
        tm, classes, cfg, names = self.tm, self.classes, self.identity.config, self.identity.classnames
        with frozen([tm.model]), cpu_threads(cfg.threads, tm.device):
            result = optimize_flat_prompt(
                tm.tower,
                classes.prompts,
                classes.predefined_ctx,
                cfg,
                init_ctx=self.init_ctx,
                random_class_tokens=_embedding_stats(tm) if names is None else None,
                device=tm.device,
                progress=self.progress and writer,
                shard=None if group is None else group.shard(),
                checkpoint=ckpt,
            )
        return prompt_from_result(
            result,
            cfg,
            backbone=tm.backbone,
            template=classes.template,
            classnames=names,
            class_agnostic=names is None,
            num_classes=self.identity.num_classes,
            fingerprint=self.identity.fingerprint,
        )
