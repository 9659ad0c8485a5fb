"""CLIP text towers: run embedded prompts through a text encoder, fast and exactly.

Towers know nothing of FPP: they map token embeddings (without positional embedding) and
read positions to text features. Every causal CLIP text tower, whatever library holds it,
is described by a :class:`TowerSpec` (:func:`openai_spec` for clip-anytorch, TPT-family
copies and OpenCLIP; :func:`hf_spec` for transformers) and runs on :class:`CausalTextTower`;
anything else runs through :class:`CallableTextTower` (the encoder itself, all positions).
"""

from __future__ import annotations

from ._base import BlockSpec, LayerNormSpec, TextTower, TowerSpec
from .callable import CallableTextTower
from .causal import CausalTextTower
from .fingerprint import fingerprint_modules, fingerprint_spec
from .hf import HF_ACTIVATIONS, hf_spec, hf_text_transformer
from .openai import TEXT_PARTS, openai_spec

__all__ = [
    "TextTower",
    "TowerSpec",
    "BlockSpec",
    "LayerNormSpec",
    "CausalTextTower",
    "CallableTextTower",
    "fingerprint_spec",
    "fingerprint_modules",
    "openai_spec",
    "hf_spec",
    "hf_text_transformer",
    "HF_ACTIVATIONS",
    "TEXT_PARTS",
]
