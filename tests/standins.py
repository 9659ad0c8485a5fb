"""Stand-ins for the live models of TPT-family codebases, written from their documented interfaces.

Same attribute names, shapes, dtypes and methods as described in
``shared/docs/upstream-tpt-family.md`` (``get_coop`` -> ``ClipTestTimeTuning``), built on a
tiny clip-anytorch CLIP. The tests may import ``clip``; the adapters never do.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fpp_init._clip import import_clip


def tokenize(texts: list[str]) -> torch.Tensor:
    return import_clip().tokenize(texts)


def n_words(text: str) -> int:
    return len(text.split(" "))


# -- text encoders --------------------------------------------------------------------------
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


class AuxBlock(nn.Module):
    """A residual block returning ``(x, aux_outputs)`` (FPP / O-TPT vendored ``clip/model.py``)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.attn, self.ln_1, self.mlp, self.ln_2 = block.attn, block.ln_1, block.mlp, block.ln_2
        self.attn_mask = block.attn_mask

    def forward(self, x: torch.Tensor, aux_outputs: Any = None) -> tuple[torch.Tensor, Any]:
        mask = self.attn_mask.to(dtype=x.dtype, device=x.device)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=True, attn_mask=mask)[0]
        x = x + self.mlp(self.ln_2(x))
        return x, aux_outputs


class AuxTransformer(nn.Module):
    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.width, self.layers = transformer.width, transformer.layers
        self.resblocks = nn.Sequential(*[AuxBlock(b) for b in transformer.resblocks])

    def forward(self, x: torch.Tensor, aux_outputs: Any = None) -> tuple[torch.Tensor, Any]:
        for block in self.resblocks:
            x, aux_outputs = block(x, aux_outputs)
        return x, aux_outputs


class AuxTextEncoder(nn.Module):
    """``text_encoder(prompts, tokenized_prompts, aux_outputs)`` -> ``(features, aux_outputs)``."""

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.transformer = AuxTransformer(clip_model.transformer)
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype

    def forward(
        self, prompts: torch.Tensor, tokenized_prompts: torch.Tensor, aux_outputs: Any
    ) -> tuple[torch.Tensor, Any]:
        x = prompts + self.positional_embedding.type(self.dtype)
        x, aux_outputs = self.transformer(x.permute(1, 0, 2), aux_outputs)
        x = self.ln_final(x.permute(1, 0, 2)).type(self.dtype)
        x = x[torch.arange(x.shape[0]), tokenized_prompts.argmax(dim=-1)] @ self.text_projection
        return x, aux_outputs


# -- prompt learners ------------------------------------------------------------------------
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
            with torch.no_grad():
                emb = clip_model.token_embedding(tokenize([ctx_init])).type(self.dtype)
            ctx_vectors = emb[0, 1 : 1 + n_ctx, :]
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
        tokens = tokenize([f"{self.prompt_prefix} {n}." for n in names])
        with torch.no_grad():
            emb = self._load().token_embedding(tokens).type(self.dtype)
        start = 1
        if register:
            self.register_buffer("token_prefix", emb[:, :start])
            self.register_buffer("token_suffix", emb[:, start + self.n_ctx :])
        else:
            self.token_prefix = emb[:, :start]
            self.token_suffix = emb[:, start + self.n_ctx :]
        self.tokenized_prompts = tokens
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


class DynaPromptLearner(PromptLearner):
    """DynaPrompt's ``custom_clip_lessctx`` learner: zero residual ``ctx`` + plain tensor ``init_ctx``.

    ``init_ctx`` holds the embeddings of the last ``n_ctx`` template words; ``token_prefix``
    holds SOS plus the leading template words; ``ctx`` is ``[num_p, n_ctx, D]`` if ``num_p > 1``.
    """

    def __init__(self, clip_model: nn.Module, classnames: list[str], n_ctx: int = 4, num_p: int = 1, **kw: Any) -> None:
        nn.Module.__init__(self)
        self.dtype = clip_model.dtype
        self.ctx_dim = clip_model.ln_final.weight.shape[0]
        self.learned_cls = False
        self._load = lambda: clip_model
        ctx_init = kw.get("ctx_init", "a_photo_of_a").replace("_", " ")
        self.n_ctx0 = n_words(ctx_init)
        with torch.no_grad():
            emb = clip_model.token_embedding(tokenize([ctx_init])).type(self.dtype)
        self.init_ctx = emb[0, 1 + self.n_ctx0 - n_ctx : 1 + self.n_ctx0, :].clone()
        ctx_vectors = torch.zeros(n_ctx, self.ctx_dim, dtype=self.dtype)
        if num_p > 1:
            ctx_vectors = ctx_vectors.unsqueeze(0).repeat(num_p, 1, 1)
        self.num_p = num_p
        self.prompt_prefix = ctx_init
        self.ctx_init_state = ctx_vectors.detach().clone()
        self.ctx = nn.Parameter(ctx_vectors)
        self.class_token_position = "end"
        self.n_ctx = n_ctx
        self._embed(classnames, register=True)

    def _embed(self, classnames: list[str], register: bool = False) -> None:
        names = [n.replace("_", " ") for n in classnames]
        tokens = tokenize([f"{self.prompt_prefix} {n}." for n in names])
        with torch.no_grad():
            emb = self._load().token_embedding(tokens).type(self.dtype)
        start = 1 + self.n_ctx0 - self.n_ctx
        if register:
            self.register_buffer("token_prefix", emb[:, :start])
            self.register_buffer("token_suffix", emb[:, 1 + self.n_ctx0 :])
        else:
            self.token_prefix = emb[:, :start]
            self.token_suffix = emb[:, 1 + self.n_ctx0 :]
        self.tokenized_prompts = tokens
        self.n_cls = len(names)
        self.classnames = names

    def forward(self) -> torch.Tensor:
        ctx = self.ctx + self.init_ctx
        prefix, suffix = self.token_prefix, self.token_suffix
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        else:
            ctx = ctx.unsqueeze(1).expand(-1, self.n_cls, -1, -1)
            prefix = prefix.unsqueeze(0).repeat(self.num_p, 1, 1, 1)
            suffix = suffix.unsqueeze(0).repeat(self.num_p, 1, 1, 1)
        return torch.cat([prefix, ctx, suffix], dim=-2)


class ClipTestTimeTuning(nn.Module):
    """What ``get_coop(...)`` returns: image encoder, text encoder, prompt learner."""

    def __init__(
        self,
        clip_model: nn.Module,
        classnames: list[str],
        *,
        encoder: Callable[[nn.Module], nn.Module] = TextEncoder,
        learner: type[PromptLearner] = PromptLearner,
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
        prompts = self.prompt_learner()
        tokens = self.prompt_learner.tokenized_prompts
        out = self.text_encoder(prompts, tokens, None) if isinstance(self.text_encoder, AuxTextEncoder) else None
        feats = out[0] if out is not None else self.text_encoder(prompts, tokens)
        return feats / feats.norm(dim=-1, keepdim=True)


def get_coop(clip_model: nn.Module, classnames: list[str], kind: str = "tpt", **kw: Any) -> ClipTestTimeTuning:
    """A fresh stand-in model of ``kind`` on a private copy of ``clip_model`` (same weights)."""
    clip_model = copy.deepcopy(clip_model)
    if kind == "tpt":
        return ClipTestTimeTuning(clip_model, classnames, **kw)
    if kind == "aux":
        return ClipTestTimeTuning(clip_model, classnames, encoder=AuxTextEncoder, **kw)
    if kind == "scaled":
        return ClipTestTimeTuning(clip_model, classnames, encoder=ScaledTextEncoder, **kw)
    if kind == "dynaprompt":
        return ClipTestTimeTuning(clip_model, classnames, learner=DynaPromptLearner, **kw)
    raise ValueError(kind)


# -- unsupported designs ----------------------------------------------------------------------
class PromptGenerator(nn.Module):
    """TPT's CoCoOp ``prompt_generator``: ``ctx`` plus a meta-net."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.ctx = nn.Parameter(torch.zeros(4, width))
        self.meta_net = nn.Linear(width, width)


class CoCoOpModel(nn.Module):
    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.text_encoder = TextEncoder(clip_model)
        self.prompt_generator = PromptGenerator(clip_model.ln_final.weight.shape[0])


class IT3ALearner(nn.Module):
    """DiffTPT's IT3A learner: several prompts in a plain list, no ``.ctx``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.ctx_list = [nn.Parameter(torch.zeros(4, width)) for _ in range(2)]
        self.ctx_init_state_list = [p.detach().clone() for p in self.ctx_list]


class IT3AModel(nn.Module):
    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.text_encoder = TextEncoder(clip_model)
        self.prompt_learner = IT3ALearner(clip_model.ln_final.weight.shape[0])


class MaPLeLearner(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.ctx = nn.Parameter(torch.zeros(2, width))
        self.compound_prompts_text = nn.ParameterList([nn.Parameter(torch.zeros(2, width))])
        self.proj = nn.Linear(width, 2 * width)


class MaPLeModel(nn.Module):
    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.text_encoder = TextEncoder(clip_model)
        self.prompt_learner = MaPLeLearner(clip_model.ln_final.weight.shape[0])
