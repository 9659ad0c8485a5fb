"""Stand-in of the DynaPrompt design: zzzx1224/DynaPrompt at acd33cf, ``dynap_classification.py`` with
``clip/custom_clip_lessctx.py``: a zero residual ``ctx`` plus a plain tensor ``init_ctx``."""

from __future__ import annotations

import copy
from typing import Any

import torch
from helpers import n_words
from torch import nn

from ._common import embed, set_class_prompts
from .tpt import ClipTestTimeTuning, PromptLearner


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
        _, emb = embed(clip_model, [ctx_init], self.dtype)
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
        texts = [f"{self.prompt_prefix} {n}." for n in names]
        start, end = 1 + self.n_ctx0 - self.n_ctx, 1 + self.n_ctx0
        set_class_prompts(self, self._load(), texts, start, end, register=register, dtype=self.dtype)
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


def get_dynaprompt(clip_model: nn.Module, classnames: list[str], **kw: Any) -> ClipTestTimeTuning:
    """A fresh DynaPrompt stand-in on a private copy of ``clip_model`` (same weights)."""
    return ClipTestTimeTuning(copy.deepcopy(clip_model), classnames, learner=DynaPromptLearner, **kw)


COVERS = {"dynaprompt": get_dynaprompt}
