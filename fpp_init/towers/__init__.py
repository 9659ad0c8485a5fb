"""CLIP text towers: run embedded prompts through a text encoder, fast and exactly.

Towers know nothing of FPP: they map token embeddings (without positional embedding) and
read positions to text features (the :class:`TextTower` protocol). Every causal CLIP text
tower, whatever library holds it, is described by a :class:`TowerSpec` (its blocks as
:class:`BlockSpec`, its norms as :class:`LayerNormSpec`; read by :func:`openai_spec` for
clip-anytorch, TPT-family copies and OpenCLIP, by :func:`hf_spec` for transformers) and runs on
:class:`CausalTextTower`; anything else runs through :class:`CallableTextTower` (the encoder
itself, all positions). :func:`fingerprint_spec` hashes a spec: the same weights give the same
fingerprint in every library.
"""

from __future__ import annotations

from ._base import BlockSpec, LayerNormSpec, TextTower, TowerSpec
from .callable import CallableTextTower
from .causal import CausalTextTower
from .fingerprint import fingerprint_spec
from .hf import hf_spec
from .openai import openai_spec

__all__ = [
    "TextTower",
    "TowerSpec",
    "BlockSpec",
    "LayerNormSpec",
    "CausalTextTower",
    "CallableTextTower",
    "openai_spec",
    "hf_spec",
    "fingerprint_spec",
]
