"""Stand-ins of the layouts fpp_init refuses.

- DiffTPT's IT3A variant: chunmeifeng/DiffTPT at 03f1169, ``IT3A/clip/custom_clip.py``: several
  prompts in a plain list ``prompt_learner.ctx_list`` with ``ctx_init_state_list``, no ``.ctx``.
- TPS: elaine-sui/TPS at 556db0f, ``model/`` (``ProtoTextPromptLearner``): ``ctx`` and
  ``ctx_init_state`` as in TPT, but class prompts in ``class_token_prefix`` / ``class_token_suffix``
  / ``tokenized_class_prompts`` (and concept prompts), no ``token_prefix``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from helpers import n_words
from torch import nn

from ._common import embed, word_embeddings
from .tpt import TextEncoder


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


def get_it3a(clip_model: nn.Module, classnames: list[str] | None = None, **kw: Any) -> IT3AModel:
    return IT3AModel(copy.deepcopy(clip_model))


class ProtoTextPromptLearner(nn.Module):
    """TPS's learner (``ctx_init`` words, class prompts only, ``batch_size=None``, ``per_label=False``)."""

    def __init__(self, clip_model: nn.Module, classnames: list[str], ctx_init: str = "a_photo_of_a") -> None:
        super().__init__()
        self.dtype = clip_model.dtype
        self.learned_cls = False
        self.prompt_prefix = ctx_init.replace("_", " ")
        self.n_ctx = n_words(self.prompt_prefix)
        ctx_vectors = word_embeddings(clip_model, self.prompt_prefix, self.n_ctx, self.dtype)
        self.ctx_init_state = ctx_vectors.detach().clone()
        self.ctx = nn.Parameter(ctx_vectors.clone())
        texts = [f"{self.prompt_prefix} {n.replace('_', ' ')}." for n in classnames]
        tokens, class_emb = embed(clip_model, texts, self.dtype)
        self.class_token_prefix = class_emb[:, :1, :]
        self.class_token_suffix = class_emb[:, 1 + self.n_ctx :, :]
        self.tokenized_class_prompts = tokens
        self.class_token_position = "end"

    def reset(self) -> None:
        self.ctx.copy_(self.ctx_init_state)


class TPSModel(nn.Module):
    def __init__(self, clip_model: nn.Module, classnames: list[str]) -> None:
        super().__init__()
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.prompt_learner = ProtoTextPromptLearner(clip_model, classnames)


def get_tps(clip_model: nn.Module, classnames: list[str], **kw: Any) -> TPSModel:
    return TPSModel(copy.deepcopy(clip_model), classnames)


COVERS = {"it3a": get_it3a, "tps": get_tps}
