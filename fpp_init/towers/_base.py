"""What a text tower is, to FPP: the protocol, the canonical description of a causal CLIP tower, and
the few helpers every library's spec builder shares (refusal with a reason, LayerNorms, typed
attribute access)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

import torch
from torch import nn

__all__ = [
    "TextTower",
    "LayerNormSpec",
    "BlockSpec",
    "TowerSpec",
    "UnsupportedTower",
    "layer_norm_spec",
    "require_layer_norm",
    "spec_or_none",
    "attr_as",
]

T = TypeVar("T")


@runtime_checkable
class TextTower(Protocol):
    """What the FPP optimiser and the sharpness measure need from a text encoder.

    Inputs are token embeddings *without* the positional embedding. ``eot_pos`` are the
    positions whose hidden state becomes the feature (the EOS token for CLIP's pooling).
    """

    #: width of the token embeddings (``D``).
    width: int
    #: maximum number of positions (``L``).
    context_length: int
    #: whether :meth:`encode_shared_prefix` computes a shared prefix once (else it expands it).
    supports_shared_prefix: bool

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the tower's weights (inputs are cast to it)."""
        ...

    @property
    def device(self) -> torch.device:
        """Where the tower's weights are."""
        ...

    def encode(self, x: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
        """Features ``[B, E]`` of embedded prompts ``x`` ``[B, >=max(eot_pos)+1, D]``, read at ``eot_pos`` ``[B]``."""
        ...

    def encode_shared_prefix(self, prefix: torch.Tensor, rest: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
        """Features ``[G, C, E]`` of prompts ``cat(prefix[g], rest[g, c])``.

        ``prefix`` ``[G, P, D]`` is shared by the ``C`` prompts of group ``g``; ``rest`` is
        ``[G, C, R, D]``; ``eot_pos`` ``[C]`` are absolute positions (all ``>= P``).
        """
        ...

    def fingerprint(self) -> str:
        """A cheap, dtype-, device- and library-independent hash of the weights (see :mod:`.fingerprint`)."""
        ...


@dataclass(frozen=True)
class LayerNormSpec:
    """A LayerNorm over the last dimension: ``(x - mean) / sqrt(var + eps) * weight + bias``."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    eps: float


@dataclass(frozen=True)
class BlockSpec:
    """One pre-LayerNorm transformer block, as every CLIP text tower has it.

    ``x = x + ls_1 * out(attention(ln_1(x)))``, then ``x = x + ls_2 * fc2(act(fc1(ln_2(x))))``;
    causal multi-head attention with ``qkv_weight`` rows ``[q; k; v]``.
    """

    ln_1: LayerNormSpec
    qkv_weight: torch.Tensor  # [3D, D]
    qkv_bias: torch.Tensor | None  # [3D]
    out_weight: torch.Tensor  # [D, D]
    out_bias: torch.Tensor | None
    ln_2: LayerNormSpec
    fc1_weight: torch.Tensor  # [H, D]
    fc1_bias: torch.Tensor | None
    fc2_weight: torch.Tensor  # [D, H]
    fc2_bias: torch.Tensor | None
    activation: str  # "quick_gelu", "gelu" or "gelu_tanh"
    ls_1: torch.Tensor | None = None  # LayerScale gamma [D]
    ls_2: torch.Tensor | None = None


@dataclass(frozen=True)
class TowerSpec:
    """A causal CLIP text tower in library-independent form (tensors are the model's own, not copies,
    where the library's layout allows).

    Attributes:
        blocks: the transformer blocks.
        heads: attention heads per block.
        positional_embedding: ``[L, D]``, added to the token embeddings before block 0.
        ln_final: the LayerNorm after the last block.
        projection: ``[D, E]``: features are ``ln_final(x)[read] @ projection`` (``None``: no projection).
        deep_prompts: MaPLe-style deep prompts: ``{block index: [n, D]}`` replacing the rows
            ``deep_start .. deep_start + n - 1`` of every prompt right before that block.
        deep_start: first row the deep prompts replace (the ctx start).
    """

    blocks: tuple[BlockSpec, ...]
    heads: int
    positional_embedding: torch.Tensor
    ln_final: LayerNormSpec
    projection: torch.Tensor | None
    deep_prompts: dict[int, torch.Tensor] = field(default_factory=dict)
    deep_start: int = 1

    @property
    def width(self) -> int:
        return int(self.positional_embedding.shape[-1])

    @property
    def context_length(self) -> int:
        return int(self.positional_embedding.shape[-2])


class UnsupportedTower(Exception):
    """Why a module is not a tower that a :class:`TowerSpec` describes exactly (the message says what).

    Raised inside the spec builders; :func:`spec_or_none` turns it into ``None`` and a reason.
    """


def spec_or_none(build: Callable[[], TowerSpec], why: list[str] | None) -> TowerSpec | None:
    """``build()``, or ``None`` when it raises :class:`UnsupportedTower` (the reason appended to ``why``)."""
    try:
        return build()
    except UnsupportedTower as exc:
        if why is not None:
            why.append(str(exc))
        return None


def layer_norm_spec(ln: object) -> LayerNormSpec | None:
    """The spec of an ``nn.LayerNorm`` (or subclass: CLIP's and OpenCLIP's casting LayerNorms) with an affine weight."""
    if not isinstance(ln, nn.LayerNorm) or ln.weight is None or len(ln.normalized_shape) != 1:
        return None
    return LayerNormSpec(ln.weight, ln.bias, float(ln.eps))


def require_layer_norm(module: object, what: str) -> LayerNormSpec:
    """:func:`layer_norm_spec` of ``module``, or :class:`UnsupportedTower` naming ``what``."""
    spec = layer_norm_spec(module)
    if spec is None:
        raise UnsupportedTower(
            f"{what} is {type(module).__name__}, not a LayerNorm with weights over the last dimension"
        )
    return spec


def attr_as(owner: object, path: str, kind: type[T]) -> T:
    """``owner.<path>`` (a dotted path, e.g. ``"embeddings.token_embedding.weight"``), typed as ``kind``.

    For the type checker only: torch types every attribute an ``nn.Module`` does not declare as
    ``Tensor | Module``, and this says which the caller expects. Nothing is checked at run time: it is
    the plain ``getattr`` chain (the same ``AttributeError`` when a part is missing); the caller's own
    checks (``isinstance``, :func:`require_layer_norm`, ...) stay where they were.
    """
    value: Any = owner
    for name in path.split("."):
        value = getattr(value, name)
    return cast(T, value)
