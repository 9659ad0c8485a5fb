"""CLIP text towers: run embedded prompts through a text encoder, fast.

Towers know nothing of FPP: they map token embeddings (without positional
embedding) and EOS positions to text features.
"""

from __future__ import annotations

from ._base import TextTower
from .callable import CallableTextTower
from .openai import CLIPTextTower, fingerprint_modules

__all__ = ["TextTower", "CLIPTextTower", "CallableTextTower", "fingerprint_modules"]
