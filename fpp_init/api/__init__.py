"""The front doors: each validates its arguments, then uses the layers below. Users reach them as
``fpp_init.<name>``; the modules here are private."""

from __future__ import annotations

from ._apply import FPPHandle, apply
from ._clip import import_clip, load_clip
from ._load import load_fpp_prompt
from ._pretrain import fingerprint_model, pretrain_flat_prompt
from ._push import push_fpp_prompt
from ._sharpness import sharpness
from ._zoo import build_zoo

__all__ = [
    "pretrain_flat_prompt",
    "load_fpp_prompt",
    "sharpness",
    "apply",
    "FPPHandle",
    "push_fpp_prompt",
    "fingerprint_model",
    "build_zoo",
    "import_clip",
    "load_clip",
]
