"""The TPT design (azshue/TPT ``clip/custom_clip.py``; C-TPT, O-TPT, DiffTPT, RLCF, MTA, R-TPT...).

``prompt_learner.ctx`` (an ``nn.Parameter`` ``[n_ctx, D]``) and ``prompt_learner.ctx_init_state``,
which ``reset()`` copies into ``ctx`` before every test sample; a two-argument text encoder
``text_encoder(prompts, tokenized_prompts)``. Everything this design does is the base class's default.
"""

from __future__ import annotations

from ._base import PromptDesign

__all__ = ["TPTDesign"]


class TPTDesign(PromptDesign):
    name = "tpt"
    description = "TPT design (ctx + ctx_init_state)"
