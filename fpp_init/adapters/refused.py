"""Known layouts fpp_init refuses, each with its one-line reason (registered like designs; never built).

TPS (elaine-sui/TPS 556db0f, ``ProtoTextPromptLearner``: class prototypes shifted, concept prompts)
and DiffTPT's IT3A variant (chunmeifeng/DiffTPT 03f1169 ``IT3A/``: several prompts in
``prompt_learner.ctx_list``, no ``.ctx``). A class token not at the end and a learned class token are
refused by every design's layout check (:meth:`~fpp_init.adapters.PromptDesign.check_layout`).
"""

from __future__ import annotations

from typing import Any

from ._base import PromptDesign

__all__ = ["TPSLayout", "IT3ALayout"]


class TPSLayout(PromptDesign):
    name = "tps"
    description = "TPS's ProtoTextPromptLearner (refused)"
    marks = ("class_token_prefix", "concept_token_prefix")
    refusal = (
        "found TPS's ProtoTextPromptLearner (class_token_prefix / concept prompts): not supported by "
        "fpp_init.apply (TPS shifts class prototypes; its prompt layout differs from TPT's)"
    )

    @classmethod
    def matches(cls, root: Any) -> bool:
        learner = cls.learner_of(root)
        return any(hasattr(learner, a) for a in cls.marks)


class IT3ALayout(PromptDesign):
    name = "it3a"
    description = "DiffTPT's IT3A prompt learner with several prompts (refused)"
    marks = ("ctx_list", "ctx_init_state_list")
    refusal = (
        "found a prompt learner with several prompts (prompt_learner.ctx_list, e.g. DiffTPT's IT3A "
        "variant): not supported; fpp_init.apply installs one prompt per model. Use the main "
        "DiffTPT script (tpt_classification.py), which has a single ctx"
    )

    @classmethod
    def matches(cls, root: Any) -> bool:
        learner = cls.learner_of(root)
        return any(hasattr(learner, a) for a in cls.marks)
