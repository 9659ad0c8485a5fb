"""Live TPT-style models, one unit per prompt-learner design.

A design (:class:`PromptDesign` subclass, one module each) knows how to recognise a live model,
read its prompt, the prompts it encodes and its text tower, and install a prompt so that the
codebase's own reset restores it. :func:`detect` walks the ordered registry; a new design is one
module plus :func:`register_design`. Adapters never import ``clip``: everything comes from the
live model. The front door that uses them is :func:`fpp_init.apply`.

Built-in designs, by short name: ``tpt`` (TPT, C-TPT, O-TPT, DiffTPT, RLCF, MTA, R-TPT),
``fpp_reference`` (the FPP reference code), ``dynaprompt``, ``cocoop`` (TPT's CoCoOp path),
``maple`` (MaPLe / PromptAlign); refused with their reason: ``tps``, ``it3a``.
"""

from __future__ import annotations

from ._base import PromptDesign, Snapshot
from ._registry import detect, register_design, registered_designs, unwrap
from .cocoop import CoCoOpDesign
from .dynaprompt import DynaPromptDesign
from .fpp_reference import FPPReferenceDesign
from .maple import MAPLE_WARNING, MaPLeDesign
from .refused import IT3ALayout, TPSLayout
from .tpt import TPTDesign

__all__ = [
    "PromptDesign",
    "Snapshot",
    "detect",
    "register_design",
    "registered_designs",
    "unwrap",
    "TPTDesign",
    "FPPReferenceDesign",
    "DynaPromptDesign",
    "CoCoOpDesign",
    "MaPLeDesign",
    "TPSLayout",
    "IT3ALayout",
    "MAPLE_WARNING",
]
