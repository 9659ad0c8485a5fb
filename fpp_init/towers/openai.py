"""Fast path for OpenAI-CLIP-style text towers.

Covers clip-anytorch and the ``clip/`` copies vendored by TPT-family repos
(including the ``aux_outputs`` variant whose blocks return tuples): every
block is an ``nn.MultiheadAttention`` (``attn``), ``ln_1``, an ``mlp`` and
``ln_2`` with a causal ``attn_mask``. The blocks are evaluated functionally,
batch-first, on only the positions up to the last EOS of the batch. This is
exact: under the causal mask the state at position ``p`` depends only on
positions ``<= p``, and features are read at the EOS.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CLIPTextTower", "fingerprint_modules", "is_openai_text_transformer"]

_HAS_SDPA = hasattr(F, "scaled_dot_product_attention")
_FP_SAMPLES = 4096


def fingerprint_modules(parts: Iterable[nn.Module | torch.Tensor]) -> str:
    """Hash shapes and an evenly strided sample of every weight.

    Values are rounded to fp16 before hashing, so an fp32 model and its fp16
    copy (clip-anytorch on CUDA), on any device, share a fingerprint.
    """
    h = hashlib.sha256()
    for part in parts:
        tensors = [part] if isinstance(part, torch.Tensor) else [p for _, p in part.named_parameters()]
        for t in tensors:
            t = t.detach()
            h.update(str(tuple(t.shape)).encode())
            flat = t.reshape(-1)
            if flat.numel() > _FP_SAMPLES:
                idx = torch.linspace(0, flat.numel() - 1, _FP_SAMPLES, device=flat.device).long()
                flat = flat[idx]
            h.update(flat.to(device="cpu", dtype=torch.float16).numpy().tobytes())
    return h.hexdigest()[:16]


def _is_causal_mask(mask: object, length: int) -> bool:
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.shape[-1] < length:
        return False
    m = mask[-length:, -length:].float()
    upper = torch.triu(torch.ones(length, length, dtype=torch.bool, device=m.device), diagonal=1)
    return bool(torch.isneginf(m[upper]).all()) and bool((m[~upper] == 0).all())


def is_openai_text_transformer(transformer: nn.Module, context_length: int) -> bool:
    """Whether ``transformer.resblocks`` has the structure the fast path needs."""
    blocks = getattr(transformer, "resblocks", None)
    if blocks is None or len(blocks) == 0:
        return False
    for blk in blocks:
        attn = getattr(blk, "attn", None)
        if not isinstance(attn, nn.MultiheadAttention) or attn.in_proj_weight is None:
            return False
        if not all(hasattr(blk, a) for a in ("ln_1", "ln_2", "mlp")):
            return False
        if not _is_causal_mask(getattr(blk, "attn_mask", None), context_length):
            return False
    return True


def _layer_norm(ln: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """CLIP's LayerNorm (computed in fp32, cast back), also for fp16 weights on CPU."""
    if isinstance(ln, nn.LayerNorm) and ln.weight is not None and ln.bias is not None:
        w, b = ln.weight.float(), ln.bias.float()
        return F.layer_norm(x.float(), ln.normalized_shape, w, b, ln.eps).to(x.dtype)
    return ln(x)


def _attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool
) -> torch.Tensor:
    if _HAS_SDPA:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # pragma: no cover - torch < 2.0
    if causal and mask is None:
        n, s = q.shape[-2], k.shape[-2]
        mask = torch.ones(n, s, dtype=torch.bool, device=q.device).tril(s - n)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


class CLIPTextTower:
    """Truncated, batch-first evaluation of an OpenAI-CLIP text transformer.

    Build it from a clip-anytorch model (:meth:`from_clip_model`) or from the
    parts a TPT-family ``TextEncoder`` holds (:meth:`from_text_encoder`).
    """

    supports_shared_prefix = True

    def __init__(
        self,
        transformer: nn.Module,
        positional_embedding: torch.Tensor,
        ln_final: nn.Module,
        text_projection: torch.Tensor,
    ) -> None:
        self.transformer = transformer
        self.positional_embedding = positional_embedding
        self.ln_final = ln_final
        self.text_projection = text_projection
        self.blocks = list(transformer.resblocks)  # type: ignore[arg-type]
        self.heads = self.blocks[0].attn.num_heads
        self.context_length, self.width = positional_embedding.shape[-2], positional_embedding.shape[-1]
        self.dtype = text_projection.dtype

    @classmethod
    def from_clip_model(cls, model: nn.Module) -> CLIPTextTower:
        return cls(model.transformer, model.positional_embedding, model.ln_final, model.text_projection)  # type: ignore[arg-type]

    @classmethod
    def from_text_encoder(cls, encoder: nn.Module) -> CLIPTextTower:
        return cls.from_clip_model(encoder)

    @staticmethod
    def supports(transformer: nn.Module, positional_embedding: torch.Tensor) -> bool:
        return is_openai_text_transformer(transformer, positional_embedding.shape[-2])

    def fingerprint(self) -> str:
        return fingerprint_modules([self.positional_embedding, self.transformer, self.ln_final, self.text_projection])

    # -- blocks -------------------------------------------------------------------------
    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, d = t.shape
        return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    @staticmethod
    def _merge_heads(t: torch.Tensor) -> torch.Tensor:
        b, h, n, hd = t.shape
        return t.transpose(1, 2).reshape(b, n, h * hd)

    def _qkv(self, blk: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        attn = blk.attn
        qkv = F.linear(_layer_norm(blk.ln_1, x), attn.in_proj_weight, attn.in_proj_bias)
        return tuple(self._split_heads(t) for t in qkv.chunk(3, dim=-1))

    def _finish(self, blk: nn.Module, x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        x = x + F.linear(self._merge_heads(o), blk.attn.out_proj.weight, blk.attn.out_proj.bias)
        return x + blk.mlp(_layer_norm(blk.ln_2, x))

    def _project(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        x = _layer_norm(self.ln_final, x).type(self.dtype)
        return x[torch.arange(x.shape[0], device=x.device), index] @ self.text_projection

    # -- public -------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        eot = eot.to(x.device)
        n = int(eot.max()) + 1
        pos = self.positional_embedding[:n].to(self.dtype)
        x = x[:, :n].to(self.dtype) + pos
        for blk in self.blocks:
            q, k, v = self._qkv(blk, x)
            x = self._finish(blk, x, _attention(q, k, v, None, causal=True))
        return self._project(x, eot)

    def encode_shared_prefix(self, prefix: torch.Tensor, rest: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        g, c, p = rest.shape[0], rest.shape[1], prefix.shape[1]
        eot = eot.to(rest.device)
        n = int(eot.max()) + 1
        r = n - p
        if r <= 0:
            raise ValueError("every EOS must lie after the shared prefix")
        pos = self.positional_embedding[:n].to(self.dtype)
        xp = prefix.to(self.dtype) + pos[:p]
        xr = (rest[:, :, :r].to(self.dtype) + pos[p:]).flatten(0, 1)
        # rest position i (absolute p + i) sees the whole prefix and rest positions <= i
        mask = torch.ones(r, n, dtype=torch.bool, device=rest.device)
        mask[:, p:] = torch.ones(r, r, dtype=torch.bool, device=rest.device).tril()
        for blk in self.blocks:
            qp, kp, vp = self._qkv(blk, xp)
            qr, kr, vr = self._qkv(blk, xr)
            k = torch.cat([kp[:, None].expand(g, c, *kp.shape[1:]).flatten(0, 1), kr], dim=2)
            v = torch.cat([vp[:, None].expand(g, c, *vp.shape[1:]).flatten(0, 1), vr], dim=2)
            op = _attention(qp, kp, vp, None, causal=True)
            orr = _attention(qr, k, v, mask, causal=False)
            xp = self._finish(blk, xp, op)
            xr = self._finish(blk, xr, orr)
        return self._project(xr, (eot - p).repeat(g)).view(g, c, -1)
