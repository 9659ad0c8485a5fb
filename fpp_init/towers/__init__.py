"""CLIP text towers: run embedded prompts through a text encoder, fast.

Towers know nothing of FPP: they map token embeddings (without positional
embedding) and EOS positions to text features.
"""

from __future__ import annotations

from ._base import TextTower
from .callable import CallableTextTower
from .openai import TEXT_PARTS, CLIPTextTower, fingerprint_modules, fingerprint_text_tower

__all__ = [
    "TEXT_PARTS",
    "CLIPTextTower",
    "CallableTextTower",
    "TextTower",
    "fingerprint_modules",
    "fingerprint_text_tower",
]
