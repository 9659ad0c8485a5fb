"""The fast exact path for every causal CLIP text tower (OpenAI CLIP, OpenCLIP, transformers).

The tower runs from a :class:`~fpp_init.towers.TowerSpec`, batch-first and functional, on
only the positions up to the last read position (EOS) of the batch. This is exact: under
the causal mask the state at position ``p`` depends only on positions ``<= p``, and
features are read at the EOS.

Further exact savings: in the last block only the EOS rows need a query, the attention
output and the MLP (every other row only feeds keys and values); a prefix shared by a
group of prompts (SOS + ctx within one noise copy) is run once and its keys/values are used
by every prompt of the group through one joint softmax, without copying them per prompt;
without autograd the residual stream and the MLP activation are updated in place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._base import BlockSpec, LayerNormSpec, TowerSpec
from .fingerprint import fingerprint_spec

__all__ = ["CausalTextTower"]


def _layer_norm(ln: LayerNormSpec, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm computed in at least fp32 and cast back (CLIP's convention for fp16 weights, also on the
    CPU); an fp64 tower computes it in fp64."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    bias = None if ln.bias is None else ln.bias.to(dtype)
    return F.layer_norm(x.to(dtype), x.shape[-1:], ln.weight.to(dtype), bias, ln.eps).to(x.dtype)


_QUICK = 1.702  # QuickGELU(x) = x * sigmoid(1.702 x) = silu(1.702 x) / 1.702


def _linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, alpha: float = 1.0, beta: float = 1.0
) -> torch.Tensor:
    """``alpha * (x @ weight.T) + beta * bias`` as one GEMM (the scales ride on the GEMM's alpha / beta)."""
    flat = x.reshape(-1, x.shape[-1])
    if bias is None:
        out = torch.mm(flat, weight.t())
        out = out if alpha == 1.0 else out.mul_(alpha)
    else:
        out = torch.addmm(bias, flat, weight.t(), beta=beta, alpha=alpha)
    return out.view(*x.shape[:-1], weight.shape[0])


def _mlp(blk: BlockSpec, x: torch.Tensor, inplace: bool) -> torch.Tensor:
    """``fc2(act(fc1(x)))`` in as few kernels as the activation allows.

    QuickGELU: ``fc2(silu(1.702 fc1(x)) / 1.702)``: the two scales ride on the GEMMs, so the MLP
    is three kernels (GEMM, SiLU, GEMM) instead of five; equal to the module up to float rounding.
    """
    if blk.activation == "quick_gelu":
        hidden = F.silu(_linear(x, blk.fc1_weight, blk.fc1_bias, _QUICK, _QUICK), inplace=inplace)
        return _linear(hidden, blk.fc2_weight, blk.fc2_bias, alpha=1.0 / _QUICK)
    hidden = F.gelu(
        _linear(x, blk.fc1_weight, blk.fc1_bias), approximate="tanh" if blk.activation == "gelu_tanh" else "none"
    )
    return _linear(hidden, blk.fc2_weight, blk.fc2_bias)


def _eos_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """One query per sequence: ``query`` ``[B, H, 1, hd]``, ``key``/``value`` ``[B, H, N, hd]``,
    ``hidden`` ``[B, 1, 1, N]`` (True: a key after the EOS)."""
    scale: float = query.shape[-1] ** -0.5  # (int ** float is Any to the type checker)
    scores = (query * scale) @ key.transpose(-2, -1)
    return scores.masked_fill(hidden, float("-inf")).softmax(-1) @ value


def _prefix_mask(hidden: torch.Tensor, prefix_len: int, groups: int) -> torch.Tensor:
    """The attention mask of :func:`_prefix_attention` (True: visible), built once per call of the tower.

    ``hidden`` ``[C or 1, M, R]`` (True: an own key after the query); every query sees the whole
    prefix. Returns ``[G * C or 1, 1, M, P + R]``.
    """
    rows, own_len = hidden.shape[-2:]
    visible = torch.cat([hidden.new_ones(*hidden.shape[:-1], prefix_len), ~hidden], dim=-1)  # [C or 1, M, P+R]
    if visible.shape[0] == 1:  # the same mask for every prompt: broadcast
        return visible.view(1, 1, rows, prefix_len + own_len)
    return visible[None].expand(groups, -1, -1, -1).reshape(-1, 1, rows, prefix_len + own_len)


def _prefix_attention(
    query: torch.Tensor,
    prefix_key: torch.Tensor,
    prefix_value: torch.Tensor,
    own_key: torch.Tensor,
    own_value: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """Attention of the rows after the prefix, for ``G x C`` prompts, over the group's prefix and their own rows.

    ``query`` ``[G, C, M, H, hd]`` (``M`` query rows per prompt), ``own_key``/``own_value``
    ``[G, C, R, H, hd]``, ``prefix_key``/``prefix_value`` ``[G, P, H, hd]`` (shared by the ``C``
    prompts of a group), ``mask`` from :func:`_prefix_mask`. The prefix keys/values (a few rows:
    SOS + ctx) are placed before each prompt's own, and one fused attention call does the rest:
    few kernels, which matters on a busy CPU where every kernel waits for all threads.
    Returns ``[G, C, M, H * hd]``.
    """
    groups, classes, rows, heads, head_dim = query.shape
    prefix_len, own_len = prefix_key.shape[1], own_key.shape[2]

    def heads_first(prefix: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        whole = torch.cat([prefix[:, None].expand(-1, classes, -1, -1, -1), own], dim=2)  # [G, C, P+R, H, hd]
        return whole.transpose(2, 3).reshape(groups * classes, heads, prefix_len + own_len, head_dim)

    key, value = heads_first(prefix_key, own_key), heads_first(prefix_value, own_value)
    q = query.transpose(2, 3).reshape(groups * classes, heads, rows, head_dim)
    out = F.scaled_dot_product_attention(q, key, value, attn_mask=mask)  # [G*C, H, M, hd]
    return (
        out.view(groups, classes, heads, rows, head_dim)
        .transpose(2, 3)
        .reshape(groups, classes, rows, heads * head_dim)
    )


class CausalTextTower:
    """Truncated, batch-first, exact evaluation of a causal CLIP text tower described by a :class:`TowerSpec`."""

    supports_shared_prefix = True

    def __init__(self, spec: TowerSpec) -> None:
        self.spec = spec
        self.blocks = spec.blocks
        self.heads = spec.heads
        self.positional_embedding = spec.positional_embedding
        self.context_length, self.width = spec.context_length, spec.width
        self.head_dim = self.width // self.heads

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the tower's weights (follows the model if it is converted later)."""
        return self.blocks[0].qkv_weight.dtype

    @property
    def device(self) -> torch.device:
        return self.blocks[0].qkv_weight.device

    def fingerprint(self) -> str:
        return fingerprint_spec(self.spec)

    # -- pieces of a block ----------------------------------------------------------------
    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """``[..., 3D]`` -> ``[..., 3, H, hd]`` (a view)."""
        split: torch.Tensor = t.unflatten(-1, (3, self.heads, self.head_dim))  # (torch leaves it unannotated)
        return split

    def _finish(self, blk: BlockSpec, x: torch.Tensor, attended: torch.Tensor, inplace: bool) -> torch.Tensor:
        """Out-projection, residual, MLP, residual."""
        update = F.linear(attended, blk.out_weight, blk.out_bias)
        if blk.ls_1 is not None:
            update = update * blk.ls_1
        x = x.add_(update) if inplace else x + update
        update = _mlp(blk, _layer_norm(blk.ln_2, x), inplace)
        if blk.ls_2 is not None:
            update = update * blk.ls_2
        return x.add_(update) if inplace else x + update

    def _eos_query_and_key_values(
        self, blk: BlockSpec, normed: torch.Tensor, normed_eos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Last block: keys/values of every row, the query of the EOS rows only."""
        d, w, b = self.width, blk.qkv_weight, blk.qkv_bias
        key_value = F.linear(normed, w[d:], None if b is None else b[d:])
        query = F.linear(normed_eos, w[:d], None if b is None else b[:d])
        return query, key_value.unflatten(-1, (2, self.heads, self.head_dim))

    def _with_deep_prompt(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Replace the deep-prompt rows of ``x`` ``[..., N, D]`` before block ``i`` (MaPLe)."""
        deep = self.spec.deep_prompts.get(i)
        if deep is None:
            return x
        start, stop = self.spec.deep_start, self.spec.deep_start + deep.shape[0]
        deep = deep.to(x.dtype).expand(*x.shape[:-2], -1, -1)
        if not torch.is_grad_enabled():
            x[..., start:stop, :] = deep
            return x
        return torch.cat([x[..., :start, :], deep, x[..., stop:, :]], dim=-2)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        x = _layer_norm(self.spec.ln_final, x)
        proj = self.spec.projection
        return x if proj is None else x.to(proj.dtype) @ proj

    # -- public -------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
        """Features ``[B, E]`` of embedded prompts ``x`` ``[B, >=max(eot_pos)+1, D]`` read at ``eot_pos``."""
        batch, device = x.shape[0], x.device
        n = int(eot_pos.max()) + 1  # (no device sync when eot_pos is on the CPU)
        eot_pos = eot_pos.to(device)
        inplace = not torch.is_grad_enabled()
        rows = torch.arange(batch, device=device)
        x = x[:, :n].to(self.dtype) + self.positional_embedding[:n].to(self.dtype)
        last = len(self.blocks) - 1
        for i, blk in enumerate(self.blocks):
            x = self._with_deep_prompt(i, x)
            normed = _layer_norm(blk.ln_1, x)
            if i < last:
                qkv = self._split_heads(F.linear(normed, blk.qkv_weight, blk.qkv_bias))  # [B, n, 3, H, hd]
                query, key, value = (qkv[:, :, j].transpose(1, 2) for j in range(3))
                attended = F.scaled_dot_product_attention(query, key, value, is_causal=True)
                attended = attended.transpose(1, 2).reshape(batch, n, self.width)
                x = self._finish(blk, x, attended, inplace)
            else:  # only the EOS rows go on
                query, key_value = self._eos_query_and_key_values(blk, normed, normed[rows, eot_pos])
                key, value = key_value[:, :, 0].transpose(1, 2), key_value[:, :, 1].transpose(1, 2)
                hidden = torch.arange(n, device=device) > eot_pos[:, None]
                attended = _eos_attention(
                    query.view(batch, self.heads, 1, self.head_dim), key, value, hidden[:, None, None]
                )
                x = self._finish(blk, x[rows, eot_pos], attended.reshape(batch, self.width), inplace)
        return self._project(x)

    def encode_shared_prefix(self, prefix: torch.Tensor, rest: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
        """Features ``[G, C, E]`` of prompts ``cat(prefix[g], rest[g, c])`` read at ``eot_pos`` ``[C]``.

        ``prefix`` ``[G, P, D]`` is computed once per group and shared by its ``C`` prompts;
        ``rest`` is ``[G, C, >=max(eot_pos)+1-P, D]``.
        """
        groups, classes, prefix_len = rest.shape[0], rest.shape[1], prefix.shape[1]
        d, device = self.width, rest.device
        n = int(eot_pos.max()) + 1  # (no device sync when eot_pos is on the CPU)
        rest_len = n - prefix_len
        if rest_len <= 0 or int(eot_pos.min()) < prefix_len:
            raise ValueError("every EOS must lie after the shared prefix")
        eos_row = (eot_pos - prefix_len).to(device)  # the EOS row of each prompt within its rest
        inplace = not torch.is_grad_enabled()
        pos = self.positional_embedding[:n].to(self.dtype)
        # one buffer of rows, the G x P prefix rows first: every linear layer is one matmul over both
        prefix_rows = (prefix.to(self.dtype) + pos[:prefix_len]).reshape(-1, d)
        rest_rows = (rest[:, :, :rest_len].to(self.dtype) + pos[prefix_len:]).reshape(-1, d)
        x = torch.cat([prefix_rows, rest_rows])
        n_prefix = groups * prefix_len
        future = torch.ones(rest_len, rest_len, dtype=torch.bool, device=device).triu(1)[None]
        causal_mask = _prefix_mask(future, prefix_len, groups)  # the same in every block but the last
        pick_eos = (slice(None), torch.arange(classes, device=device), eos_row)
        last = len(self.blocks) - 1
        for i, blk in enumerate(self.blocks):
            if i in self.spec.deep_prompts:
                x = torch.cat(
                    [self._with_deep_prompt(i, x[:n_prefix].view(groups, prefix_len, d)).reshape(-1, d), x[n_prefix:]]
                )
            normed = _layer_norm(blk.ln_1, x)
            if i < last:
                qkv = F.linear(normed, blk.qkv_weight, blk.qkv_bias)
                p_query, p_key, p_value = self._split_heads(qkv[:n_prefix].view(groups, prefix_len, 3 * d)).unbind(2)
                r_query, r_key, r_value = self._split_heads(
                    qkv[n_prefix:].view(groups, classes, rest_len, 3 * d)
                ).unbind(3)
                rest_out = _prefix_attention(r_query, p_key, p_value, r_key, r_value, causal_mask)
                prefix_out = F.scaled_dot_product_attention(
                    p_query.transpose(1, 2), p_key.transpose(1, 2), p_value.transpose(1, 2), is_causal=True
                )
                attended = torch.cat([prefix_out.transpose(1, 2).reshape(n_prefix, d), rest_out.reshape(-1, d)])
                x = self._finish(blk, x, attended, inplace)
            else:  # only the EOS rows go on: keys/values for all rows, the rest only at the EOS
                normed_rest = normed[n_prefix:].view(groups, classes, rest_len, d)
                query, key_value = self._eos_query_and_key_values(blk, normed, normed_rest[pick_eos])
                p_key = key_value[:n_prefix, 0].view(groups, prefix_len, self.heads, self.head_dim)
                p_value = key_value[:n_prefix, 1].view(groups, prefix_len, self.heads, self.head_dim)
                r_key = key_value[n_prefix:, 0].view(groups, classes, rest_len, self.heads, self.head_dim)
                r_value = key_value[n_prefix:, 1].view(groups, classes, rest_len, self.heads, self.head_dim)
                hidden = (torch.arange(rest_len, device=device) > eos_row[:, None])[:, None]  # [C, 1, R]
                query = query.view(groups, classes, 1, self.heads, self.head_dim)
                eos_mask = _prefix_mask(hidden, prefix_len, groups)
                attended = _prefix_attention(query, p_key, p_value, r_key, r_value, eos_mask)
                x_eos = x[n_prefix:].view(groups, classes, rest_len, d)[pick_eos]
                x = self._finish(blk, x_eos, attended.view(groups, classes, d), inplace)
        return self._project(x)
