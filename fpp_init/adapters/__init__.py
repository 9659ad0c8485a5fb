"""Live TPT-family models (TPT, C-TPT, O-TPT, DynaPrompt, CoCoOp, MaPLe...), seen through what they share.

Adapters never import ``clip``: everything comes from the live model. The front door that
uses them is :func:`fpp_init.apply`.
"""

from __future__ import annotations

from ._detect import Convention, Family, detect, encoder_convention, unwrap
from ._families import MAPLE_WARNING, LiveModel, Snapshot

__all__ = ["Family", "Convention", "LiveModel", "Snapshot", "detect", "encoder_convention", "unwrap", "MAPLE_WARNING"]
