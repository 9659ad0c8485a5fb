"""Towers of Hugging Face ``transformers`` CLIP text models: ``CLIPModel``, ``CLIPTextModel`` and
``CLIPTextModelWithProjection``, in the module layouts of transformers 4.x (``text_model`` is a
``CLIPTextTransformer``) and 5.x (``text_model`` is a ``CLIPTextModel`` that holds the parts).

Every layer is pre-LayerNorm (``layer_norm1`` -> ``self_attn`` -> residual -> ``layer_norm2`` ->
``mlp`` -> residual) under a causal mask that transformers always builds, with attention scale
``head_dim ** -0.5``, then ``final_layer_norm`` and a bias-free ``text_projection``: the canonical
tower. The separate ``q/k/v`` projections are concatenated (a copy, made without autograd
history); the positional table is gathered with ``position_ids`` when that buffer is not
``arange`` (some converted checkpoints carry a damaged one; transformers gathers too).

Attention dropout is not modelled: it acts only in training mode, and FPP runs the frozen
tower in evaluation mode.
"""

from __future__ import annotations

import torch
from torch import nn

from ._base import BlockSpec, TowerSpec, UnsupportedTower, attr_as, require_layer_norm, spec_or_none

__all__ = ["hf_spec", "hf_text_transformer", "HF_ACTIVATIONS"]

#: ``hidden_act`` of a transformers config -> the activation of a :class:`BlockSpec`
#: (the tanh approximations ``gelu_new``/``gelu_fast``/``gelu_accurate`` are the same formula).
HF_ACTIVATIONS = {
    "quick_gelu": "quick_gelu",
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_accurate": "gelu_tanh",
}

_TEXT_TRANSFORMERS = ("CLIPTextTransformer", "CLIPTextModel")


def hf_text_transformer(model: nn.Module) -> nn.Module | None:
    """The module holding ``embeddings``, ``encoder`` and ``final_layer_norm`` (down the ``text_model``
    chain: ``CLIPModel.text_model``, ``CLIPTextModelWithProjection.text_model``, 4.x's
    ``CLIPTextModel.text_model``), or ``None``."""
    module: object = model
    for _ in range(3):
        if isinstance(module, nn.Module) and all(
            hasattr(module, a) for a in ("embeddings", "encoder", "final_layer_norm")
        ):
            return module
        module = getattr(module, "text_model", None)
    return None


def _linear(module: object, what: str) -> nn.Linear:
    if not isinstance(module, nn.Linear):
        raise UnsupportedTower(f"{what} is {type(module).__name__}, not a Linear")
    return module


def _block(layer: nn.Module, activation: str, where: str) -> BlockSpec:
    attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    q, k, v, out = (
        _linear(getattr(attn, f"{n}_proj", None), f"{where}.self_attn.{n}_proj") for n in ("q", "k", "v", "out")
    )
    biases: list[torch.Tensor | None] = [p.bias for p in (q, k, v)]
    if any(b is None for b in biases) and not all(b is None for b in biases):
        raise UnsupportedTower(f"{where}: only some of q/k/v have a bias")
    fc1, fc2 = (
        _linear(getattr(mlp, "fc1", None), f"{where}.mlp.fc1"),
        _linear(getattr(mlp, "fc2", None), f"{where}.mlp.fc2"),
    )
    return BlockSpec(
        ln_1=require_layer_norm(getattr(layer, "layer_norm1", None), f"{where}.layer_norm1"),
        qkv_weight=torch.cat([q.weight, k.weight, v.weight]),
        qkv_bias=None if biases[0] is None else torch.cat([b for b in biases if b is not None]),
        out_weight=out.weight,
        out_bias=out.bias,
        ln_2=require_layer_norm(getattr(layer, "layer_norm2", None), f"{where}.layer_norm2"),
        fc1_weight=fc1.weight,
        fc1_bias=fc1.bias,
        fc2_weight=fc2.weight,
        fc2_bias=fc2.bias,
        activation=activation,
    )


def _spec(model: nn.Module) -> TowerSpec:
    text = hf_text_transformer(model)
    if text is None or type(text).__name__ not in _TEXT_TRANSFORMERS:
        found = type(model).__name__ if text is None else type(text).__name__
        raise UnsupportedTower(f"{found} is not a transformers CLIP text model")
    config = text.config
    act = getattr(config, "hidden_act", None)
    activation = HF_ACTIVATIONS.get(act) if isinstance(act, str) else None
    if activation is None:
        raise UnsupportedTower(f"hidden_act {act!r} (supported: {', '.join(HF_ACTIVATIONS)})")
    embeddings = text.embeddings
    positions = attr_as(embeddings, "position_embedding.weight", torch.Tensor)
    ids = getattr(embeddings, "position_ids", None)
    if isinstance(ids, torch.Tensor):
        ids = ids.reshape(-1)[: positions.shape[0]].long()
        if not torch.equal(ids.cpu(), torch.arange(ids.numel())):
            positions = positions[ids.to(positions.device)]
    layers = list(attr_as(text, "encoder.layers", nn.ModuleList))
    if not layers:
        raise UnsupportedTower("the encoder has no layers")
    projection = getattr(model, "text_projection", None)
    if projection is not None:
        if not isinstance(projection, nn.Linear) or projection.bias is not None:
            raise UnsupportedTower("text_projection is not a bias-free Linear")
        projection = projection.weight.t()  # [E, D] -> a [D, E] view
    return TowerSpec(
        blocks=tuple(_block(layer, activation, f"layer {i}") for i, layer in enumerate(layers)),
        heads=int(attr_as(config, "num_attention_heads", int)),
        positional_embedding=positions,
        ln_final=require_layer_norm(text.final_layer_norm, "final_layer_norm"),
        projection=projection,
    )


@torch.no_grad()  # the q/k/v concatenation, the position gather and the transposed view carry no autograd history
def hf_spec(model: nn.Module, *, why: list[str] | None = None) -> TowerSpec | None:
    """The canonical description of a transformers CLIP text tower, or ``None`` if it is not one.

    When ``None`` is returned and ``why`` is a list, the reason is appended to it.
    """
    return spec_or_none(lambda: _spec(model), why)
