"""An independent, straightforward computation of the FPP spec, used as the oracle in tests.

It runs CLIP's own modules (``model.transformer``, full 77 positions, sequence-first),
not the package's fast tower.
"""

from __future__ import annotations

import torch


def encode_embeddings(model: torch.nn.Module, emb: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
    """``model.encode_text`` on token embeddings instead of token ids."""
    x = emb.type(model.dtype) + model.positional_embedding.type(model.dtype)
    x = model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    x = model.ln_final(x).type(model.dtype)
    return x[torch.arange(x.shape[0]), eot_pos] @ model.text_projection


def spec_losses(
    model: torch.nn.Module,
    emb: torch.Tensor,
    eot_pos: torch.Tensor,
    n_ctx: int,
    predefined: torch.Tensor,
    ctx: torch.Tensor,
    noise: torch.Tensor,
    flat_weight: float,
) -> tuple[float, float]:
    """(L_align, L_flat) of the spec for one step, with ``noise`` ``[K, L, D]``."""

    def with_ctx(c: torch.Tensor) -> torch.Tensor:
        e = emb.clone()
        e[:, 1 : 1 + n_ctx] = c
        return e

    def norm(f: torch.Tensor) -> torch.Tensor:
        return f / f.norm(dim=-1, keepdim=True)

    with torch.no_grad():
        target = norm(encode_embeddings(model, with_ctx(predefined), eot_pos))
        clean = norm(encode_embeddings(model, with_ctx(ctx), eot_pos))
        k, c = noise.shape[0], emb.shape[0]
        noisy_in = (with_ctx(ctx)[None] + noise[:, None]).flatten(0, 1)
        noisy = norm(encode_embeddings(model, noisy_in, eot_pos.repeat(k))).view(k, c, -1)
    align = target.shape[-1] * torch.mean((clean - target) ** 2)
    flat = -flat_weight * torch.nn.functional.cosine_similarity(clean[None], noisy, dim=-1).mean()
    return float(align), float(flat)
