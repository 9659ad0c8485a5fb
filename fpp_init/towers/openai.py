"""Fast path for OpenAI-CLIP-style text towers.

Covers clip-anytorch and the ``clip/`` copies vendored by TPT-family repos
(including the ``aux_outputs`` variant whose blocks return tuples): every
block is an ``nn.MultiheadAttention`` (``attn``), ``ln_1``, an ``mlp`` and
``ln_2`` with a causal ``attn_mask``. The blocks are evaluated functionally,
batch-first, on only the positions up to the last EOS of the batch. This is
exact: under the causal mask the state at position ``p`` depends only on
positions ``<= p``, and features are read at the EOS.

Further exact savings: in the last block only the EOS rows need a query, the
attention output and the MLP (every other row only feeds keys and values); a
prefix shared by a group of prompts (SOS + ctx within one noise copy) is run
once and its keys/values are used by every prompt of the group through a
joint softmax, without copying them per prompt; without autograd the
residual stream and the MLP activation are updated in place.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

#: The parts of a text tower, as clip-anytorch's CLIP and TPT-family ``TextEncoder`` name them.
TEXT_PARTS = ("positional_embedding", "transformer", "ln_final", "text_projection")

__all__ = ["TEXT_PARTS", "CLIPTextTower", "fingerprint_modules", "fingerprint_text_tower", "is_openai_text_transformer"]

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
        if attn.bias_k is not None or attn.add_zero_attn or attn.dropout > 0:
            return False
        if not all(hasattr(blk, a) for a in ("ln_1", "ln_2", "mlp")):
            return False
        if not _is_causal_mask(getattr(blk, "attn_mask", None), context_length):
            return False
    return True


def fingerprint_text_tower(obj: object) -> str:
    """Fingerprint of the :data:`TEXT_PARTS` of ``obj`` (a CLIP model, a text encoder or a tower)."""
    return fingerprint_modules([getattr(obj, a) for a in TEXT_PARTS])


def _layer_norm(ln: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """CLIP's LayerNorm (computed in fp32, cast back), also for fp16 weights on CPU."""
    if isinstance(ln, nn.LayerNorm) and ln.weight is not None and ln.bias is not None:
        w, b = ln.weight.float(), ln.bias.float()
        return F.layer_norm(x.float(), ln.normalized_shape, w, b, ln.eps).to(x.dtype)
    return ln(x)


def _is_quick_gelu_mlp(mlp: nn.Module) -> bool:
    """``c_fc -> QuickGELU -> c_proj`` (OpenAI CLIP), which :func:`_mlp` evaluates with fewer passes."""
    return (
        isinstance(getattr(mlp, "c_fc", None), nn.Linear)
        and isinstance(getattr(mlp, "c_proj", None), nn.Linear)
        and type(getattr(mlp, "gelu", None)).__name__ == "QuickGELU"
        and len(list(mlp.children())) == 3
    )


def _mlp(mlp: nn.Module, x: torch.Tensor, fast: bool, inplace: bool) -> torch.Tensor:
    if not fast:
        return mlp(x)
    h = F.linear(x, mlp.c_fc.weight, mlp.c_fc.bias)
    if inplace:  # same arithmetic as QuickGELU's x * sigmoid(1.702 * x), one buffer fewer
        h.mul_(torch.sigmoid(h * 1.702))
    else:
        h = h * torch.sigmoid(1.702 * h)
    return F.linear(h, mlp.c_proj.weight, mlp.c_proj.bias)


def _causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal self-attention of ``[B, H, N, hd]`` tensors (fused kernel when available)."""
    if _HAS_SDPA:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    n = q.shape[-2]  # pragma: no cover - torch < 2.0
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    upper = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
    return scores.masked_fill(upper, float("-inf")).softmax(-1) @ v


def _query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """One query per sequence: ``q`` ``[B, H, 1, hd]``, keys ``[B, H, N, hd]``, ``masked`` ``[B, 1, 1, N]``."""
    scores = (q * (q.shape[-1] ** -0.5)) @ k.transpose(-2, -1)
    return scores.masked_fill(masked, float("-inf")).softmax(-1) @ v


def _prefix_attention(
    q: torch.Tensor,
    kp: torch.Tensor,
    vp: torch.Tensor,
    kr: torch.Tensor,
    vr: torch.Tensor,
    masked: torch.Tensor,
) -> torch.Tensor:
    """Attention of the rest rows of ``G x C`` prompts over their group's prefix and their own rows.

    ``q`` ``[G, C, M, H, hd]`` (M queries per prompt), ``kr``/``vr`` ``[G, C, R, H, hd]``,
    ``kp``/``vp`` ``[G, P, H, hd]`` (shared by the C prompts of a group, never copied per
    prompt), ``masked`` ``[C or 1, M, R]`` (True: key after the query). Every query sees
    the whole prefix. One softmax over prefix and own keys. Returns ``[G, C, M, H * hd]``.
    """
    g, c, m, h, hd = q.shape
    p = kp.shape[1]
    q = q * (hd**-0.5)
    qg = q.permute(0, 3, 1, 2, 4).reshape(g, h, c * m, hd)
    s_p = torch.matmul(qg, kp.permute(0, 2, 3, 1)).view(g, h, c, m, p).permute(0, 2, 1, 3, 4)
    s_r = torch.matmul(q.permute(0, 1, 3, 2, 4), kr.permute(0, 1, 3, 4, 2))  # [G, C, H, M, R]
    s_r = s_r.masked_fill(masked[:, None], float("-inf"))
    a = torch.cat([s_p, s_r], dim=-1).softmax(-1)
    a_p = a[..., :p].permute(0, 2, 1, 3, 4).reshape(g, h, c * m, p)
    o = torch.matmul(a[..., p:], vr.permute(0, 1, 3, 2, 4))  # [G, C, H, M, hd]
    o = o + torch.matmul(a_p, vp.permute(0, 2, 1, 3)).view(g, h, c, m, hd).permute(0, 2, 1, 3, 4)
    return o.permute(0, 1, 3, 2, 4).reshape(g, c, m, h * hd)


class CLIPTextTower:
    """Truncated, batch-first evaluation of an OpenAI-CLIP text transformer.

    Build it from a clip-anytorch model (:meth:`from_clip_model`) or from the
    parts a TPT-family ``TextEncoder`` holds (:meth:`from_text_encoder`). Check
    :meth:`supports` first: the tower is exact only for causal OpenAI-style blocks.
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
        self._fast_mlp = [_is_quick_gelu_mlp(blk.mlp) for blk in self.blocks]

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the tower's weights (follows the model if it is converted later)."""
        return self.text_projection.dtype

    @classmethod
    def from_clip_model(cls, model: nn.Module) -> CLIPTextTower:
        """The text tower of a clip-anytorch ``CLIP`` (or anything with the same attributes)."""
        return cls(model.transformer, model.positional_embedding, model.ln_final, model.text_projection)  # type: ignore[arg-type]

    @classmethod
    def from_text_encoder(cls, encoder: nn.Module) -> CLIPTextTower:
        """The tower of a TPT-family ``TextEncoder`` (``transformer``, ``positional_embedding``,
        ``ln_final``, ``text_projection``; blocks may return ``(x, aux_outputs)``)."""
        return cls.from_clip_model(encoder)

    @staticmethod
    def supports(transformer: nn.Module, positional_embedding: torch.Tensor) -> bool:
        """Whether the blocks are causal OpenAI-CLIP blocks (else the fast path is not exact)."""
        return is_openai_text_transformer(transformer, positional_embedding.shape[-2])

    def fingerprint(self) -> str:
        return fingerprint_text_tower(self)

    # -- blocks -------------------------------------------------------------------------
    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """``[..., 3D]`` -> ``[..., 3, H, hd]`` (a view)."""
        return t.unflatten(-1, (3, self.heads, t.shape[-1] // (3 * self.heads)))

    def _finish(self, i: int, x: torch.Tensor, o: torch.Tensor, inplace: bool) -> torch.Tensor:
        """Out-projection, residual, MLP, residual of block ``i``."""
        blk = self.blocks[i]
        a = F.linear(o, blk.attn.out_proj.weight, blk.attn.out_proj.bias)
        x = x.add_(a) if inplace else x + a
        h = _mlp(blk.mlp, _layer_norm(blk.ln_2, x), self._fast_mlp[i], inplace)
        return x.add_(h) if inplace else x + h

    def _last_qkv(self, blk: nn.Module, h: torch.Tensor, h_eos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Last block: keys/values of every row, the query of the EOS rows only."""
        w, b, d = blk.attn.in_proj_weight, blk.attn.in_proj_bias, self.width
        kv = F.linear(h, w[d:], None if b is None else b[d:])
        q = F.linear(h_eos, w[:d], None if b is None else b[:d])
        return q, kv

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        return _layer_norm(self.ln_final, x).type(self.dtype) @ self.text_projection

    # -- public -------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """Features ``[B, E]`` of embedded prompts ``x`` ``[B, >=max(eot)+1, D]`` read at ``eot``."""
        b, n = x.shape[0], int(eot.max()) + 1  # (no device sync when eot is on the CPU)
        eot = eot.to(x.device)
        h_, hd = self.heads, self.width // self.heads
        inplace = not torch.is_grad_enabled()
        rows = torch.arange(b, device=x.device)
        x = x[:, :n].to(self.dtype) + self.positional_embedding[:n].to(self.dtype)
        last = len(self.blocks) - 1
        for i, blk in enumerate(self.blocks):
            h = _layer_norm(blk.ln_1, x)
            if i < last:
                qkv = self._heads(F.linear(h, blk.attn.in_proj_weight, blk.attn.in_proj_bias))
                q, k, v = (qkv[:, :, j].transpose(1, 2) for j in range(3))
                o = _causal_attention(q, k, v).transpose(1, 2).reshape(b, n, self.width)
                x = self._finish(i, x, o, inplace)
            else:
                q, kv = self._last_qkv(blk, h, h[rows, eot])
                kv = kv.unflatten(-1, (2, h_, hd))
                k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
                masked = torch.arange(n, device=x.device) > eot[:, None]
                o = _query_attention(q.view(b, h_, 1, hd), k, v, masked[:, None, None])
                x = self._finish(i, x[rows, eot], o.reshape(b, self.width), inplace)
        return self._project(x)

    def encode_shared_prefix(self, prefix: torch.Tensor, rest: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """Features ``[G, C, E]`` of prompts ``cat(prefix[g], rest[g, c])`` read at ``eot`` ``[C]``.

        ``prefix`` ``[G, P, D]`` is computed once per group and shared by its ``C``
        prompts; ``rest`` is ``[G, C, >=max(eot)+1-P, D]``.
        """
        g, c, p = rest.shape[0], rest.shape[1], prefix.shape[1]
        d, h_, hd = self.width, self.heads, self.width // self.heads
        n = int(eot.max()) + 1  # (no device sync when eot is on the CPU)
        r = n - p
        if r <= 0 or int(eot.min()) < p:
            raise ValueError("every EOS must lie after the shared prefix")
        eot = eot.to(rest.device)
        inplace = not torch.is_grad_enabled()
        dev = rest.device
        pos = self.positional_embedding[:n].to(self.dtype)
        # one row buffer, prefix rows first: every linear layer is one matmul over both
        x = torch.cat(
            [(prefix.to(self.dtype) + pos[:p]).reshape(-1, d), (rest[:, :, :r].to(self.dtype) + pos[p:]).reshape(-1, d)]
        )
        n_p = g * p
        rel = eot - p  # EOS row of each prompt within the rest
        causal = torch.ones(r, r, dtype=torch.bool, device=dev).triu(1)[None]
        last = len(self.blocks) - 1
        for i, blk in enumerate(self.blocks):
            w, b = blk.attn.in_proj_weight, blk.attn.in_proj_bias
            h = _layer_norm(blk.ln_1, x)
            if i < last:
                qkv = F.linear(h, w, b)
                qkv_p = self._heads(qkv[:n_p].view(g, p, 3 * d))  # [G, P, 3, H, hd]
                qkv_r = self._heads(qkv[n_p:].view(g, c, r, 3 * d))  # [G, C, R, 3, H, hd]
                qp, kp, vp = (qkv_p[:, :, j] for j in range(3))
                o_r = _prefix_attention(qkv_r[..., 0, :, :], kp, vp, qkv_r[..., 1, :, :], qkv_r[..., 2, :, :], causal)
                o_p = _causal_attention(qp.transpose(1, 2), kp.transpose(1, 2), vp.transpose(1, 2))
                o = torch.cat([o_p.transpose(1, 2).reshape(n_p, d), o_r.reshape(-1, d)])
                x = self._finish(i, x, o, inplace)
            else:  # only the EOS rows go on: keys/values for all rows, the rest only at the EOS
                hr = h[n_p:].view(g, c, r, d)
                pick = (slice(None), torch.arange(c, device=dev), rel)
                q, kv = self._last_qkv(blk, h, hr[pick])
                kv = kv.unflatten(-1, (2, h_, hd))
                kp, vp = kv[:n_p, 0].view(g, p, h_, hd), kv[:n_p, 1].view(g, p, h_, hd)
                kr, vr = kv[n_p:, 0].view(g, c, r, h_, hd), kv[n_p:, 1].view(g, c, r, h_, hd)
                masked = (torch.arange(r, device=dev) > rel[:, None])[:, None]  # [C, 1, R]
                o = _prefix_attention(q.view(g, c, 1, h_, hd), kp, vp, kr, vr, masked)
                x = self._finish(i, x[n_p:].view(g, c, r, d)[pick], o.view(g, c, d), inplace)
        return self._project(x)
