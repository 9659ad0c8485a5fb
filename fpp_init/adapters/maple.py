"""The MaPLe design, as PromptAlign runs it (jameelhassan/PromptAlign ``trainers/prompt_align.py``:
``MultiModalPromptLearner``, ``TextEncoder``; Dassl trainer).

``prompt_learner.ctx`` ``[n_ctx, D]`` (the first template words) feeds the text branch and, through
``proj``, the image branch; deeper text prompts ``compound_prompts_text`` replace the ctx rows of
blocks 1, 2, ...; the text encoder is ``forward(prompts, tokenized_prompts,
compound_prompts_deeper_text)``. ``trainer.tpt()`` snapshots the prompts with ``set_prompt_inits()``
and ``reset()`` restores them. FPP is pretrained through the encoder with the model's deep prompts
(fixed), aligned with the loaded ``ctx``, and written into ``ctx`` and ``ctx_init_state``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import AdapterError
from ._base import PromptDesign, describe, encoder_call, single, text_encoder_of

__all__ = ["MaPLeDesign", "MAPLE_WARNING"]

#: warned (BeyondPaperWarning) when FPP is installed in a MaPLe / PromptAlign model.
MAPLE_WARNING = (
    "MaPLe / PromptAlign: the FPP prompt is pretrained on the text branch only (with the model's deep "
    "text prompts), but prompt_learner.ctx also feeds the image branch through prompt_learner.proj; FPP "
    "does not account for that, and the paper evaluates only CLIP TPT. This use is beyond the paper: "
    "compare with the original initialisation before relying on it"
)


class MaPLeDesign(PromptDesign):
    name = "maple"
    description = "MaPLe / PromptAlign design (ctx + deep compound prompts)"
    call = "compound"
    marks = ("compound_prompts_text",)
    beyond_paper = MAPLE_WARNING
    tower_parts = (
        "other CLIP weights or other deep text prompts (a MaPLe / PromptAlign tower includes its compound_prompts_text)"
    )

    @classmethod
    def matches(cls, root: Any) -> bool:
        learner = cls.learner_of(root)
        if learner is None or not hasattr(learner, "compound_prompts_text"):
            return False
        deep = learner.compound_prompts_text
        if not isinstance(deep, (nn.ParameterList, list, tuple)) or not all(isinstance(p, torch.Tensor) for p in deep):
            raise AdapterError(
                f"found a MaPLe-style prompt learner {describe(learner, cls.marks)} whose compound_prompts_text is "
                f"{type(deep).__name__}, not a list of tensors"
            )
        encoder = text_encoder_of(root)
        if encoder_call(encoder) != cls.call:
            raise AdapterError(
                f"found a MaPLe-style prompt learner (compound_prompts_text) but the text encoder "
                f"{type(encoder).__name__} does not take compound_prompts_deeper_text; unsupported design"
            )
        return True

    def template(self) -> str | None:
        return None  # PromptAlign always loads a trained ctx: not the template's words

    def current_init(self) -> torch.Tensor:
        # ctx itself, not ctx_init_state: loading the trained checkpoint updates only ctx, and
        # trainer.tpt() snapshots it with set_prompt_inits() before tuning
        return single(self.ctx, "prompt_learner.ctx")

    def deep_prompts(self) -> list[torch.Tensor]:
        # fixed while FPP pretrains: detached, no gradient leaks into them
        return [p.detach() for p in self.learner.compound_prompts_text]

    def encoder_args(self) -> tuple[Any, ...]:
        return (self.deep_prompts(),)
