"""The front doors: each validates its arguments, then uses the layers below.

``pretrain_flat_prompt``, ``load_fpp_prompt``, ``sharpness``, ``apply`` / ``FPPHandle``,
``push_fpp_prompt``, ``fingerprint_model``; ``import_clip`` / ``load_clip`` (clip-anytorch in any environment).
"""

from __future__ import annotations

from .apply import FPPHandle, apply
from .clip import import_clip, load_clip
from .load import load_fpp_prompt
from .pretrain import fingerprint_model, pretrain_flat_prompt
from .push import push_fpp_prompt
from .sharpness import sharpness

__all__ = [
    "pretrain_flat_prompt",
    "load_fpp_prompt",
    "sharpness",
    "apply",
    "FPPHandle",
    "push_fpp_prompt",
    "fingerprint_model",
    "import_clip",
    "load_clip",
]
