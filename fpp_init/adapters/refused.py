"""Known layouts fpp_init refuses, each with its one-line reason (registered like designs; never built).

TPS (elaine-sui/TPS 556db0f, ``ProtoTextPromptLearner``: class prototypes shifted, concept prompts)
and DiffTPT's IT3A variant (chunmeifeng/DiffTPT 03f1169 ``IT3A/``: several prompts in
``prompt_learner.ctx_list``, no ``.ctx``). A class token not at the end and a learned class token are
refused by every design's layout check (:meth:`~fpp_init.adapters.PromptDesign.check_layout`).

TAPT (xinwong/TAPT 14d8d0e) beyond its ``TAPTVLJ`` trainer (served by the MaPLe design): ``TAPTVLI``
(``trainers/adv_vli.py`` ``VLPromptLearner``: no ``ctx_init_state`` until ``set_prompt_init_states()`` runs inside
``trainer.tapt()``; its deeper text prompts are IVLP parameters inside the text blocks) and ``TAPTV``
(``trainers/adv_v.py``: vision prompts only, fixed text embeddings of hard prompts).
"""

from __future__ import annotations

from typing import Any

from ._base import PromptDesign

__all__ = ["TPSLayout", "IT3ALayout", "TAPTVLILayout", "TAPTVLayout"]


class _MarkedLayout(PromptDesign):
    """A refused layout recognised by any of its ``marks`` on the prompt learner."""

    @classmethod
    def matches(cls, root: Any) -> bool:
        learner = cls.learner_of(root)
        return any(hasattr(learner, a) for a in cls.marks)


class TPSLayout(_MarkedLayout):
    name = "tps"
    description = "TPS's ProtoTextPromptLearner (refused)"
    marks = ("class_token_prefix", "concept_token_prefix")
    refusal = (
        "found TPS's ProtoTextPromptLearner (class_token_prefix / concept prompts): not supported by "
        "fpp_init.apply (TPS shifts class prototypes; its prompt layout differs from TPT's)"
    )


class IT3ALayout(_MarkedLayout):
    name = "it3a"
    description = "DiffTPT's IT3A prompt learner with several prompts (refused)"
    marks = ("ctx_list", "ctx_init_state_list")
    refusal = (
        "found a prompt learner with several prompts (prompt_learner.ctx_list, e.g. DiffTPT's IT3A "
        "variant): not supported; fpp_init.apply installs one prompt per model. Use the main "
        "DiffTPT script (tpt_classification.py), which has a single ctx"
    )


class TAPTVLILayout(PromptDesign):
    name = "tapt_vli"
    description = "TAPT's TAPTVLI VLPromptLearner (refused)"
    marks = ("set_prompt_init_states",)
    refusal = (
        "found a prompt learner whose reset state is made only by set_prompt_init_states() (TAPT's TAPTVLI "
        "VLPromptLearner: trainer.tapt() creates ctx_init_state after any line a script can add, and its deeper text "
        "prompts live inside the text blocks): not supported by fpp_init.apply; TAPT's TAPTVLJ trainer is supported"
    )

    @classmethod
    def matches(cls, root: Any) -> bool:
        learner = cls.learner_of(root)
        return (
            callable(getattr(learner, "set_prompt_init_states", None))
            and not hasattr(learner, "ctx_init_state")
            and not hasattr(learner, "compound_prompts_text")
        )


class TAPTVLayout(PromptDesign):
    name = "tapt_v"
    description = "TAPT's TAPTV model with fixed text embeddings (refused)"
    marks = ("embeddings",)
    refusal = (
        "found a model without a prompt learner whose text features are fixed embeddings (TAPT's TAPTV: vision "
        "prompts only, FixedEmbeddings of hard prompts): there is no text prompt for FPP to initialise; TAPT's "
        "TAPTVLJ trainer is supported"
    )

    @classmethod
    def matches(cls, root: Any) -> bool:
        fixed = getattr(root, "embeddings", None)
        return cls.learner_of(root) is None and callable(getattr(fixed, "return_fixed_embeddings", None))
