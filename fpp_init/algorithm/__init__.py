"""The FPP maths: the optimiser and the sharpness measure, on one feature path.

Knows nothing of files, the Hub, CLIP libraries or upstream repositories: it works on a
:class:`~fpp_init.towers.TextTower` and :class:`EmbeddedPrompts`.
"""

from __future__ import annotations

from .embedded import EmbeddedPrompts, plan_chunks, shard_classes
from .features import ClassFeatures, normalize
from .noise import draw_noise
from .optimizer import Checkpointing, FPPResult, Shard, TrainState, initial_ctx, optimize_flat_prompt
from .sharpness import Landscape, SharpnessResult, measure_sharpness

__all__ = [
    "EmbeddedPrompts",
    "ClassFeatures",
    "normalize",
    "draw_noise",
    "plan_chunks",
    "shard_classes",
    "optimize_flat_prompt",
    "initial_ctx",
    "FPPResult",
    "Shard",
    "TrainState",
    "Checkpointing",
    "measure_sharpness",
    "SharpnessResult",
    "Landscape",
]
