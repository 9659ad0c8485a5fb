"""Stand-in of the TPT design: azshue/TPT at 63ecbac, ``clip/custom_clip.py`` (``get_coop`` ->
``ClipTestTimeTuning``, ``PromptLearner``, ``TextEncoder``), shared by C-TPT, O-TPT, DiffTPT, RLCF,
MTA and R-TPT.

Same attribute names, shapes, dtypes and methods as described in
``shared/docs/upstream-tpt-family.md``, built on a tiny clip-anytorch CLIP. The tests may import
``clip``; the adapters never do.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from helpers import n_words
from torch import nn

from ._common import set_class_prompts, word_embeddings


class TextEncoder(nn.Module):
    """``text_encoder(prompts, tokenized_prompts)`` -> unnormalised features (TPT, C-TPT...)."""

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype

    def forward(self, prompts: torch.Tensor, tokenized_prompts: torch.Tensor) -> torch.Tensor:
        x = prompts + self.positional_embedding.type(self.dtype)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x).type(self.dtype)
        return x[torch.arange(x.shape[0]), tokenized_prompts.argmax(dim=-1)] @ self.text_projection


class ScaledTextEncoder(TextEncoder):
    """Not plain CLIP maths (features doubled): the adapter must fall back to calling it."""

    def forward(self, prompts: torch.Tensor, tokenized_prompts: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(prompts, tokenized_prompts)


class PromptLearner(nn.Module):
    """TPT's ``PromptLearner``: ``ctx`` fp32 Parameter, ``ctx_init_state``, prefix/suffix buffers."""

    def __init__(
        self,
        clip_model: nn.Module,
        classnames: list[str],
        n_ctx: int = 4,
        ctx_init: str | None = "a_photo_of_a",
        ctx_position: str = "end",
        learned_cls: bool = False,
    ) -> None:
        super().__init__()
        self.dtype = clip_model.dtype
        self.ctx_dim = clip_model.ln_final.weight.shape[0]
        self.learned_cls = learned_cls
        self._load = lambda: clip_model  # upstream re-loads CLIP in reset_classnames
        if ctx_init:
            ctx_init = ctx_init.replace("_", " ")
            if "[CLS]" in ctx_init:
                ctx_init = ctx_init.replace("[CLS] ", "")
                ctx_position = "middle"
            n_ctx = n_words(ctx_init)
            ctx_vectors = word_embeddings(clip_model, ctx_init, n_ctx, self.dtype)
            prompt_prefix = ctx_init
        else:
            ctx_vectors = torch.randn(n_ctx, self.ctx_dim, generator=torch.Generator().manual_seed(0)) * 0.02
            prompt_prefix = " ".join(["X"] * n_ctx)
        self.prompt_prefix = prompt_prefix
        self.ctx_init_state = ctx_vectors.detach().clone()
        self.ctx = nn.Parameter(ctx_vectors.clone())
        self.class_token_position = ctx_position
        self.n_ctx = n_ctx
        self._embed(classnames, register=True)

    def _embed(self, classnames: list[str], register: bool = False) -> None:
        names = [n.replace("_", " ") for n in classnames]
        texts = [f"{self.prompt_prefix} {n}." for n in names]
        set_class_prompts(self, self._load(), texts, 1, 1 + self.n_ctx, register=register, dtype=self.dtype)
        self.n_cls = len(names)
        self.classnames = names

    def reset(self) -> None:
        self.ctx.copy_(self.ctx_init_state)

    def reset_classnames(self, classnames: list[str], arch: str) -> None:
        self._embed(classnames)

    def forward(self) -> torch.Tensor:
        ctx = self.ctx
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=-2)


class ClipTestTimeTuning(nn.Module):
    """What ``get_coop(...)`` returns: image encoder, text encoder, prompt learner."""

    def __init__(
        self,
        clip_model: nn.Module,
        classnames: list[str],
        *,
        encoder: Callable[[nn.Module], nn.Module] = TextEncoder,
        learner: type[nn.Module] = PromptLearner,
        **kw: Any,
    ) -> None:
        super().__init__()
        self.image_encoder = clip_model.visual
        self.text_encoder = encoder(clip_model)
        self.logit_scale = clip_model.logit_scale.data
        self.prompt_learner = learner(clip_model, classnames, **kw)

    def reset(self) -> None:
        self.prompt_learner.reset()

    def reset_classnames(self, classnames: list[str], arch: str) -> None:
        self.prompt_learner.reset_classnames(classnames, arch)

    def get_text_features(self) -> torch.Tensor:
        feats = self.text_encoder(self.prompt_learner(), self.prompt_learner.tokenized_prompts)
        return feats / feats.norm(dim=-1, keepdim=True)


def get_tpt(clip_model: nn.Module, classnames: list[str], **kw: Any) -> ClipTestTimeTuning:
    """A fresh TPT stand-in on a private copy of ``clip_model`` (same weights)."""
    return ClipTestTimeTuning(copy.deepcopy(clip_model), classnames, **kw)


def get_scaled(clip_model: nn.Module, classnames: list[str], **kw: Any) -> ClipTestTimeTuning:
    """The TPT stand-in with a text encoder that is not plain CLIP maths."""
    return ClipTestTimeTuning(copy.deepcopy(clip_model), classnames, encoder=ScaledTextEncoder, **kw)


#: the registered designs this module's stand-ins cover (checked by tests/test_adapter_registry.py).
COVERS = {"tpt": get_tpt}
