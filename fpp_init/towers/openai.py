"""Towers of OpenAI-CLIP-shaped text encoders: clip-anytorch's ``CLIP`` and the ``TextEncoder``
copies vendored by TPT-family repositories (including the ``aux_outputs`` variant whose blocks
return tuples).

Every block is an ``nn.MultiheadAttention`` (``attn``), ``ln_1``, an ``mlp``
(``c_fc`` -> QuickGELU/GELU -> ``c_proj``) and ``ln_2``, with a causal ``attn_mask``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._base import BlockSpec, LayerNormSpec, TowerSpec

__all__ = ["TEXT_PARTS", "openai_spec", "layer_norm_spec", "mlp_activation", "is_causal_mask"]

#: The parts of a text tower, as clip-anytorch's CLIP and TPT-family ``TextEncoder`` name them.
TEXT_PARTS = ("positional_embedding", "transformer", "ln_final", "text_projection")


def layer_norm_spec(ln: object) -> LayerNormSpec | None:
    """The spec of an ``nn.LayerNorm`` (or subclass: CLIP's fp32-casting LayerNorm) with an affine weight."""
    if not isinstance(ln, nn.LayerNorm) or ln.weight is None or len(ln.normalized_shape) != 1:
        return None
    return LayerNormSpec(ln.weight, ln.bias, float(ln.eps))


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


def _block_spec(blk: nn.Module, mask: object, length: int) -> BlockSpec | None:
    attn = getattr(blk, "attn", None)
    if not isinstance(attn, nn.MultiheadAttention) or attn.in_proj_weight is None:
        return None
    if attn.bias_k is not None or attn.add_zero_attn or attn.dropout > 0:
        return None
    own = getattr(blk, "attn_mask", None)
    if not is_causal_mask(own if isinstance(own, torch.Tensor) else mask, length):
        return None
    mlp = getattr(blk, "mlp", None)
    fc1, fc2 = getattr(mlp, "c_fc", None), getattr(mlp, "c_proj", None)
    acts = [m for name, m in (mlp.named_children() if mlp is not None else []) if name not in ("c_fc", "c_proj")]
    act = mlp_activation(acts[0]) if len(acts) == 1 else None
    ln_1, ln_2 = layer_norm_spec(getattr(blk, "ln_1", None)), layer_norm_spec(getattr(blk, "ln_2", None))
    if not (isinstance(fc1, nn.Linear) and isinstance(fc2, nn.Linear) and act and ln_1 and ln_2):
        return None
    ls_1, ls_2 = _layer_scale(getattr(blk, "ls_1", None)), _layer_scale(getattr(blk, "ls_2", None))
    if ls_1 is False or ls_2 is False:
        return None
    return BlockSpec(
        ln_1=ln_1,
        qkv_weight=attn.in_proj_weight,
        qkv_bias=attn.in_proj_bias,
        out_weight=attn.out_proj.weight,
        out_bias=attn.out_proj.bias,
        ln_2=ln_2,
        fc1_weight=fc1.weight,
        fc1_bias=fc1.bias,
        fc2_weight=fc2.weight,
        fc2_bias=fc2.bias,
        activation=act,
        ls_1=ls_1 or None,
        ls_2=ls_2 or None,
    )


def _layer_scale(module: object) -> torch.Tensor | bool | None:
    """OpenCLIP's LayerScale gamma, ``None`` for none / ``nn.Identity``, ``False`` if unknown."""
    if module is None or isinstance(module, nn.Identity):
        return None
    gamma = getattr(module, "gamma", None)
    if isinstance(gamma, torch.Tensor) and gamma.dim() == 1 and not getattr(module, "inplace", False):
        return gamma
    return False


def openai_spec(
    transformer: nn.Module,
    positional_embedding: torch.Tensor,
    ln_final: nn.Module,
    text_projection: torch.Tensor | nn.Linear | None,
    *,
    attn_mask: object = None,
    deep_prompts: dict[int, torch.Tensor] | None = None,
    deep_start: int = 1,
) -> TowerSpec | None:
    """The canonical description of an OpenAI-style causal text transformer, or ``None`` if it is not one.

    ``attn_mask`` is the model-level mask for towers whose blocks do not hold their own (OpenCLIP).
    """
    blocks: Sequence[nn.Module] = getattr(transformer, "resblocks", None) or []
    if not isinstance(positional_embedding, torch.Tensor) or positional_embedding.dim() != 2 or not len(blocks):
        return None
    length = int(positional_embedding.shape[0])
    specs = [_block_spec(b, attn_mask, length) for b in blocks]
    final = layer_norm_spec(ln_final)
    if any(s is None for s in specs) or final is None:
        return None
    if isinstance(text_projection, nn.Linear):
        if text_projection.bias is not None:
            return None
        projection: torch.Tensor | None = text_projection.weight.t()
    elif isinstance(text_projection, torch.Tensor) or text_projection is None:
        projection = text_projection
    else:
        return None
    return TowerSpec(
        blocks=tuple(specs),  # type: ignore[arg-type]
        heads=int(blocks[0].attn.num_heads),
        positional_embedding=positional_embedding,
        ln_final=final,
        projection=projection,
        deep_prompts=dict(deep_prompts or {}),
        deep_start=deep_start,
    )
