"""Live TPT-style models, one unit per prompt-learner design.

A design (:class:`PromptDesign` subclass, one module each) knows how to recognise a live model,
read its prompt, the prompts it encodes and its text tower, and install a prompt so that the
codebase's own reset restores it. :func:`detect` walks the ordered registry; a new design is one
module plus :func:`register_design`. Adapters never import ``clip``: everything comes from the
live model. The front door that uses them is :func:`fpp_init.apply`.

Built-in designs, by short name: ``tpt`` (TPT, C-TPT, O-TPT, DiffTPT, RLCF, MTA, R-TPT, A-TPT, TTA-VLM,
TPT on OpenCLIP), ``tca`` (TPT with attribute prompts; lambda counts classes),
``fpp_reference`` (the FPP reference code), ``dynaprompt``, ``cocoop`` (TPT's CoCoOp path),
``maple`` (MaPLe / PromptAlign, TAPT's TAPTVLJ), ``zero_maple`` (ZERO's MaPLe path, module ``zero``),
``dart`` (one context per class), each in the module of that name (``fpp_init.adapters.tpt.TPTDesign`` ...); refused with their reason
(``refused``): ``tps``, ``it3a``, ``tapt_vli``, ``tapt_v``.
"""

from __future__ import annotations

from ._base import PromptDesign, Snapshot
from ._registry import detect, register_design, registered_designs, unwrap

__all__ = ["PromptDesign", "Snapshot", "detect", "register_design", "registered_designs", "unwrap"]
