"""Stand-in of TPT's CoCoOp path: azshue/TPT at 63ecbac, ``clip/cocoop.py`` (``get_cocoop`` ->
``CoCoOpCLIP``, ``CoCoOpPromptLearner`` as ``model.prompt_generator``; ``--cocoop`` in
``tpt_classification.py``)."""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import torch
from helpers import n_words, tokenize
from torch import nn

from ._common import set_class_prompts, word_embeddings
from .tpt import TextEncoder


class CoCoOpPromptLearner(nn.Module):
    """TPT's ``CoCoOpPromptLearner`` (``model.prompt_generator``): ``ctx`` plus a meta-net; no
    ``reset`` and no ``ctx_init_state``; ``forward(im_features, ctx_only)``."""

    def __init__(
        self, clip_model: nn.Module, classnames: list[str], n_ctx: int = 4, ctx_init: str | None = "a_photo_of_a"
    ) -> None:
        super().__init__()
        self.dtype = clip_model.dtype
        self.ctx_dim = clip_model.ln_final.weight.shape[0]
        embed_dim = clip_model.text_projection.shape[1]
        self._load = lambda: clip_model  # upstream re-loads CLIP in reset_classnames
        if ctx_init:
            ctx_init = ctx_init.replace("_", " ")
            n_ctx = n_words(ctx_init)
            ctx_vectors = word_embeddings(clip_model, ctx_init, n_ctx, self.dtype)
            prompt_prefix = ctx_init
        else:
            ctx_vectors = torch.randn(n_ctx, self.ctx_dim, generator=torch.Generator().manual_seed(0)) * 0.02
            prompt_prefix = " ".join(["X"] * n_ctx)
        self.prompt_prefix = prompt_prefix
        self.ctx = nn.Parameter(ctx_vectors.clone())
        self.meta_net = nn.Sequential(
            OrderedDict(
                [
                    ("linear1", nn.Linear(embed_dim, embed_dim // 16)),
                    ("relu", nn.ReLU(inplace=True)),
                    ("linear2", nn.Linear(embed_dim // 16, self.ctx_dim)),
                ]
            )
        )
        self.ctx_init = ctx_init
        self.class_token_position = "end"
        self.n_ctx = n_ctx
        self._embed(classnames, register=True)

    def _embed(self, classnames: list[str], register: bool = False) -> None:
        names = [n.replace("_", " ") for n in classnames]
        texts = [f"{self.prompt_prefix} {n}." for n in names]
        set_class_prompts(self, self._load(), texts, 1, 1 + self.n_ctx, register=register, dtype=self.dtype)
        self.name_lens = [len(tokenize([n])[0].nonzero()) - 2 for n in names]
        self.n_cls = len(names)

    def construct_prompts(self, ctx: torch.Tensor, prefix: torch.Tensor, suffix: torch.Tensor) -> torch.Tensor:
        return torch.cat([prefix, ctx, suffix], dim=1)

    def reset_classnames(self, classnames: list[str], arch: str) -> None:
        self._embed(classnames)

    def forward(self, im_features: torch.Tensor, ctx_only: bool = False) -> torch.Tensor:
        bias = self.meta_net(im_features).unsqueeze(1)  # (batch, 1, ctx_dim)
        ctx_shifted = self.ctx.unsqueeze(0) + bias  # (batch, n_ctx, ctx_dim)
        if ctx_only:
            return ctx_shifted
        return torch.stack(
            [
                self.construct_prompts(c.unsqueeze(0).expand(self.n_cls, -1, -1), self.token_prefix, self.token_suffix)
                for c in ctx_shifted
            ]
        )


class CoCoOpCLIP(nn.Module):
    """What TPT's ``get_cocoop(...)`` returns; ``gen_ctx`` makes the context TPT tunes per sample
    (``prompt_generator.ctx`` + the meta-net bias of the image). Upstream wraps ``gen_ctx`` in
    ``torch.cuda.amp.autocast()``; the stand-in runs in fp32 on the CPU."""

    def __init__(self, clip_model: nn.Module, classnames: list[str], n_ctx: int = 4, **kw: Any) -> None:
        super().__init__()
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale.data
        self.prompt_generator = CoCoOpPromptLearner(clip_model, classnames, n_ctx, **kw)
        self.tokenized_prompts = self.prompt_generator.tokenized_prompts
        self.dtype = clip_model.dtype

    def gen_ctx(self, image: torch.Tensor, aug: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            image_features = self.image_encoder(image.type(self.dtype))
            avg = image_features[0].unsqueeze(0) if aug else image_features.mean(dim=0, keepdim=True)
            ctx = self.prompt_generator(avg, ctx_only=True)
        return image_features, ctx.detach().clone()

    def forward_ctx(self, image_features: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        pg = self.prompt_generator
        prompts = torch.cat([pg.token_prefix, ctx.expand(pg.n_cls, -1, -1), pg.token_suffix], dim=-2)
        text_features = self.text_encoder(prompts, pg.tokenized_prompts)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        return self.logit_scale.exp() * image_features @ text_features.t()

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.forward_ctx(*inputs)


def get_cocoop(clip_model: nn.Module, classnames: list[str], **kw: Any) -> CoCoOpCLIP:
    """A fresh CoCoOp stand-in on a private copy of ``clip_model`` (meta-net drawn from seed 0)."""
    clip_model = copy.deepcopy(clip_model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return CoCoOpCLIP(clip_model, classnames, **kw)


COVERS = {"cocoop": get_cocoop}
