"""Towers of OpenAI-CLIP-shaped text encoders: clip-anytorch's ``CLIP``, the ``TextEncoder`` copies
vendored by TPT-family repositories (including the ``aux_outputs`` variant whose blocks return
tuples), and OpenCLIP's built-in ``TextTransformer``.

Every block is an attention module (``attn``), ``ln_1``, an ``mlp`` (``c_fc`` -> QuickGELU/GELU ->
``c_proj``) and ``ln_2``, with a causal ``attn_mask`` (the block's own, or the model's). OpenCLIP's
variations are covered: LayerScale (``ls_1``/``ls_2``), ``nn.GELU`` (erf or tanh), LayerNorm eps,
``LayerNormFp32``, batch-first blocks, a bias-free ``nn.Linear`` projection, and its
``CustomResidualAttentionBlock`` when none of its extras (qk-norm, scaled cosine attention, head
scales, inner / post-attention / MLP LayerNorms) is switched on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._base import (
    BlockSpec,
    TowerSpec,
    UnsupportedTower,
    attr_as,
    layer_norm_spec,
    require_layer_norm,
    spec_or_none,
)

__all__ = ["TEXT_PARTS", "openai_spec", "layer_norm_spec", "mlp_activation", "is_causal_mask"]

#: The parts of a text tower, as clip-anytorch's CLIP and TPT-family ``TextEncoder`` name them.
TEXT_PARTS = ("positional_embedding", "transformer", "ln_final", "text_projection")


def mlp_activation(act: object) -> str | None:
    """``"quick_gelu"``, ``"gelu"`` or ``"gelu_tanh"`` for the activation modules CLIP towers use."""
    if type(act).__name__ == "QuickGELU":
        return "quick_gelu"
    if isinstance(act, nn.GELU):
        return "gelu_tanh" if act.approximate == "tanh" else "gelu"
    return None


def is_causal_mask(mask: object, length: int) -> bool:
    """Whether ``mask`` is an additive ``[>=L, >=L]`` mask with ``-inf`` above the diagonal and 0 elsewhere."""
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.shape[-1] < length:
        return False
    if not mask.is_floating_point():
        return False
    m = mask[-length:, -length:].float()
    upper = torch.triu(torch.ones(length, length, dtype=torch.bool, device=m.device), diagonal=1)
    return bool(torch.isneginf(m[upper]).all()) and bool((m[~upper] == 0).all())


def _is_identity(module: object) -> bool:
    return module is None or isinstance(module, nn.Identity)


def _attention(attn: object, where: str) -> tuple[torch.Tensor, torch.Tensor | None, nn.Linear]:
    """``(qkv_weight, qkv_bias, out_proj)`` of plain multi-head self-attention."""
    if isinstance(attn, nn.MultiheadAttention):
        if attn.in_proj_weight is None:
            raise UnsupportedTower(f"{where}: MultiheadAttention with separate key/value widths")
        if attn.bias_k is not None or attn.add_zero_attn:
            raise UnsupportedTower(f"{where}: MultiheadAttention with bias_k/bias_v or add_zero_attn")
        if attn.dropout > 0:
            raise UnsupportedTower(f"{where}: attention dropout {attn.dropout}")
        return attn.in_proj_weight, attn.in_proj_bias, attn.out_proj
    # OpenCLIP's own Attention (CustomResidualAttentionBlock): plain only when every extra is off
    if type(attn).__name__ == "Attention" and type(attn).__module__.startswith("open_clip"):
        extras = (
            ("logit_scale", "scaled cosine attention (scaled_cosine_attn)"),
            ("head_scale", "per-head attention scales (scale_heads)"),
            ("ln_q", "LayerNorm on queries and keys (qk_norm)"),
            ("ln_k", "LayerNorm on queries and keys (qk_norm)"),
            ("ln_inner", "LayerNorm inside attention (scale_attn_inner)"),
        )
        for name, feature in extras:
            if not _is_identity(getattr(attn, name, None)):
                raise UnsupportedTower(f"{where}: {feature}")
        drop = max(getattr(getattr(attn, n, None), "p", 0.0) for n in ("attn_drop", "out_drop"))
        if drop > 0:
            raise UnsupportedTower(f"{where}: attention dropout {drop}")
        out = getattr(attn, "out_proj", None)
        weight = getattr(attn, "in_proj_weight", None)
        if isinstance(out, nn.Linear) and isinstance(weight, torch.Tensor):
            return weight, getattr(attn, "in_proj_bias", None), out
    raise UnsupportedTower(f"{where}: attention is {type(attn).__name__}, not multi-head self-attention")


def _layer_scale(module: object, where: str) -> torch.Tensor | None:
    """OpenCLIP's LayerScale gamma; ``None`` for none / ``nn.Identity``."""
    if _is_identity(module):
        return None
    gamma = getattr(module, "gamma", None)
    if isinstance(gamma, torch.Tensor) and gamma.dim() == 1 and not getattr(module, "inplace", False):
        return gamma
    raise UnsupportedTower(f"{where}: {type(module).__name__} is not a LayerScale")


def _block_spec(blk: nn.Module, mask: object, length: int, where: str) -> BlockSpec:
    if hasattr(blk, "ln_1_kv"):
        raise UnsupportedTower(f"{where}: a cross-attention block")
    qkv_weight, qkv_bias, out = _attention(getattr(blk, "attn", None), where)
    own = getattr(blk, "attn_mask", None)
    if not is_causal_mask(own if isinstance(own, torch.Tensor) else mask, length):
        raise UnsupportedTower(f"{where}: no causal attention mask (bidirectional attention)")
    if not _is_identity(getattr(blk, "ln_attn", None)):
        raise UnsupportedTower(f"{where}: LayerNorm after attention (scale_attn)")
    mlp = getattr(blk, "mlp", None)
    children = dict(mlp.named_children()) if isinstance(mlp, nn.Module) else {}
    fc1, fc2 = children.pop("c_fc", None), children.pop("c_proj", None)
    if not _is_identity(children.get("ln")):
        raise UnsupportedTower(f"{where}: LayerNorm inside the MLP (scale_fc)")
    acts = [m for m in children.values() if not _is_identity(m)]
    if not (isinstance(fc1, nn.Linear) and isinstance(fc2, nn.Linear) and len(acts) == 1):
        raise UnsupportedTower(f"{where}: the MLP is not c_fc -> activation -> c_proj")
    act = mlp_activation(acts[0])
    if act is None:
        raise UnsupportedTower(f"{where}: activation {type(acts[0]).__name__} (supported: QuickGELU, GELU)")
    return BlockSpec(
        ln_1=require_layer_norm(getattr(blk, "ln_1", None), f"{where}.ln_1"),
        qkv_weight=qkv_weight,
        qkv_bias=qkv_bias,
        out_weight=out.weight,
        out_bias=out.bias,
        ln_2=require_layer_norm(getattr(blk, "ln_2", None), f"{where}.ln_2"),
        fc1_weight=fc1.weight,
        fc1_bias=fc1.bias,
        fc2_weight=fc2.weight,
        fc2_bias=fc2.bias,
        activation=act,
        ls_1=_layer_scale(getattr(blk, "ls_1", None), f"{where}.ls_1"),
        ls_2=_layer_scale(getattr(blk, "ls_2", None), f"{where}.ls_2"),
    )


def _projection(text_projection: object) -> torch.Tensor | None:
    if isinstance(text_projection, nn.Linear):
        if text_projection.bias is not None:
            raise UnsupportedTower("the text projection has a bias (OpenCLIP proj_bias=True)")
        return text_projection.weight.t()  # [E, D] -> a [D, E] view
    if isinstance(text_projection, torch.Tensor) or text_projection is None:
        return text_projection
    raise UnsupportedTower(
        f"the text projection is {type(text_projection).__name__}, not a matrix or a bias-free Linear"
    )


@torch.no_grad()  # a transposed view of a projection must carry no autograd history
def openai_spec(
    transformer: nn.Module,
    positional_embedding: torch.Tensor,
    ln_final: nn.Module,
    text_projection: torch.Tensor | nn.Linear | None,
    *,
    attn_mask: object = None,
    deep_prompts: dict[int, torch.Tensor] | None = None,
    deep_start: int = 1,
    why: list[str] | None = None,
) -> TowerSpec | None:
    """The canonical description of an OpenAI-style causal text transformer, or ``None`` if it is not one.

    ``attn_mask`` is the model-level mask for towers whose blocks do not hold their own (OpenCLIP).
    When ``None`` is returned and ``why`` is a list, the reason is appended to it.
    """
    return spec_or_none(
        lambda: _spec(
            transformer, positional_embedding, ln_final, text_projection, attn_mask, deep_prompts, deep_start
        ),
        why,
    )


def _spec(
    transformer: nn.Module,
    positional_embedding: torch.Tensor,
    ln_final: nn.Module,
    text_projection: torch.Tensor | nn.Linear | None,
    attn_mask: object,
    deep_prompts: dict[int, torch.Tensor] | None,
    deep_start: int,
) -> TowerSpec:
    blocks: Sequence[nn.Module] = getattr(transformer, "resblocks", None) or []
    if not len(blocks):
        raise UnsupportedTower(f"{type(transformer).__name__} has no resblocks")
    if not isinstance(positional_embedding, torch.Tensor) or positional_embedding.dim() != 2:
        raise UnsupportedTower("the positional embedding is not a [L, D] tensor")
    length = int(positional_embedding.shape[0])
    specs = tuple(_block_spec(b, attn_mask, length, f"block {i}") for i, b in enumerate(blocks))
    return TowerSpec(
        blocks=specs,
        heads=int(attr_as(blocks[0], "attn.num_heads", int)),
        positional_embedding=positional_embedding,
        ln_final=require_layer_norm(ln_final, "ln_final"),
        projection=_projection(text_projection),
        deep_prompts=dict(deep_prompts or {}),
        deep_start=deep_start,
    )
