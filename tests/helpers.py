"""Helpers shared by the tests and the stand-ins (imported as ``helpers``; not fixtures)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from fpp_init.backbones.clip import import_clip


def tokenize(texts: list[str]) -> torch.Tensor:
    return import_clip().tokenize(texts)


def n_words(text: str) -> int:
    return len(text.split(" "))


def to_float64(model: nn.Module) -> nn.Module:
    """An fp64 copy of ``model`` that really computes in fp64: ``.double()``, CLIP's fp32-casting
    LayerNorms made plain ``nn.LayerNorm`` (their forward casts to fp32, which fp64 weights cannot
    run), and the plain tensor attributes and dtypes kept at construction (``ctx_init_state``,
    ``TextEncoder.dtype``, lists of init states) converted as well."""
    twin = copy.deepcopy(model).double()
    for m in twin.modules():
        if isinstance(m, nn.LayerNorm) and type(m) is not nn.LayerNorm:
            m.__class__ = nn.LayerNorm
        for k, v in list(vars(m).items()):
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not isinstance(v, nn.Parameter):
                setattr(m, k, v.double())
            elif v is torch.float32:
                setattr(m, k, torch.float64)
            elif isinstance(v, list) and v and all(isinstance(t, torch.Tensor) for t in v):
                setattr(m, k, [t.double() if t.is_floating_point() else t for t in v])
    return twin


class Trace:
    """A ``Checkpointing`` for ``optimize_flat_prompt`` that keeps the ctx after every step (fp64, CPU)."""

    every = 1

    def __init__(self) -> None:
        self.ctx: list[torch.Tensor] = []

    def load(self) -> None:
        return None

    def save(self, state: Any) -> None:
        self.ctx.append(state.ctx.detach().double().cpu().clone())

    def trajectory(self) -> torch.Tensor:
        """``[steps, n_ctx, D]``."""
        return torch.stack(self.ctx)


def load_trained(model: nn.Module, seed: int = 1, scale: float = 0.02) -> None:
    """Stand in for loading a trained CoCoOp / MaPLe checkpoint: shift every prompt-learner
    parameter (``load_state_dict(strict=False)``, as the upstream loaders do)."""
    learner = getattr(model, "prompt_generator", None) or getattr(model, "prompt_learner", None)
    if learner is None:  # DART: no prompt learner and nothing trained to load (--load is not read on --myclip)
        return
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        state = {k: v + scale * torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in learner.named_parameters()}
    learner.load_state_dict(state, strict=False)
