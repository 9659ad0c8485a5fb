"""Prompt-embedding steps the stand-ins share (no upstream of its own, and no ``COVERS``: it stands in for no
design). Each is what the upstream learners write inline: tokenise, ``token_embedding`` under ``no_grad``,
optionally ``.type(dtype)``, then slice."""

from __future__ import annotations

from collections.abc import Callable

import torch
from helpers import tokenize
from torch import nn


def embed(
    clip_model: nn.Module,
    texts: list[str],
    dtype: torch.dtype | None = None,
    tokenizer: Callable[[list[str]], torch.Tensor] = tokenize,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens, clip_model.token_embedding(tokens))`` of ``texts``, cast to ``dtype`` unless it is None."""
    tokens = tokenizer(texts)
    with torch.no_grad():
        emb = clip_model.token_embedding(tokens)
        if dtype is not None:
            emb = emb.type(dtype)
    return tokens, emb


def word_embeddings(clip_model: nn.Module, text: str, n: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The embeddings of the first ``n`` words of ``text`` (``emb[0, 1 : 1 + n, :]``, after SOS)."""
    _, emb = embed(clip_model, [text], dtype)
    return emb[0, 1 : 1 + n, :]


def set_class_prompts(
    learner: nn.Module,
    clip_model: nn.Module,
    texts: list[str],
    start: int,
    end: int,
    *,
    register: bool,
    dtype: torch.dtype | None = None,
    tokenizer: Callable[[list[str]], torch.Tensor] = tokenize,
) -> None:
    """TPT's class-prompt step: ``learner.token_prefix = emb[:, :start]``, ``learner.token_suffix = emb[:, end:]``
    (buffers with ``register``, plain assignments otherwise) and ``learner.tokenized_prompts`` the tokens."""
    tokens, emb = embed(clip_model, texts, dtype, tokenizer)
    if register:
        learner.register_buffer("token_prefix", emb[:, :start])
        learner.register_buffer("token_suffix", emb[:, end:])
    else:
        learner.token_prefix = emb[:, :start]
        learner.token_suffix = emb[:, end:]
    learner.tokenized_prompts = tokens
