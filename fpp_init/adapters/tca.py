"""TCA's attribute prompts (rhebbalaguppe/TCA_PromptWithoutPanic b9645fd, ``TCA/clip/custom_clip.py``): the TPT
design with ``num_attributes`` prompt rows per class.

TCA's ``PromptLearner`` is TPT's with the prompts ``"<template> <attribute> <class>."`` for the first
``num_attributes`` attributes of each class, class-major (the ``A`` rows of class 0 first):
``token_prefix``, ``token_suffix`` and ``tokenized_prompts`` have ``C * A`` rows, one shared ``ctx``,
``ctx_init_state`` and ``reset()`` as in TPT. FPP is pretrained on exactly the prompts TCA encodes, each row
one prompt of the objective, like every other design.

**lambda counts classes, not prompt rows.** FPP's flatness weight is ``lambda = 1 + 15/C``: how strongly
flatness is weighed against alignment for a label set of ``C`` classes (2.5 for EuroSAT's 10, 1.015 for
ImageNet's 1000). Both FPP losses are means over the prompt rows, so the row count does not change their
scale; what the rule encodes is the number of decisions the prompt serves. TCA's classifier stays ``C``-way
(``inference()`` sums the exponentiated logits of each class's ``A`` attribute prompts and normalises over
classes): the ``A`` prompts of a class describe one class, they are not more classes. So the design reports
``num_labels = C`` and ``apply`` uses ``1 + 15/C`` (an explicit ``flat_weight`` still wins); the prompt
records the ``C`` class names and ``num_classes = C``.

The live model tells ``C`` from ``C * A`` unambiguously: the learner keeps ``num_attributes`` (``A``, an int;
``0`` is plain TPT, served by the TPT design), its ``C`` class names (``classnames``, ``n_cls = C``) and the
``C * A`` prompt rows, and TCA's own ``inference()`` reshapes the text features to ``[C, A, E]``. The design
checks ``len(classnames) * num_attributes == rows`` and refuses a model where they disagree (TCA's
inference could not run on it either) rather than guessing.
"""

from __future__ import annotations

from typing import Any

from ..errors import AdapterError
from .tpt import TPTDesign

__all__ = ["TCADesign"]


def _attributes(learner: Any) -> int | None:
    n = getattr(learner, "num_attributes", None)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


class TCADesign(TPTDesign):
    name = "tca"
    description = "TCA design (TPT with num_attributes prompts per class)"
    marks = ("num_attributes", "attributes")

    @classmethod
    def matches(cls, root: Any) -> bool:
        return _attributes(cls.learner_of(root)) is not None and super().matches(root)

    def check_geometry(self) -> None:
        super().check_geometry()
        names, per_class = getattr(self.learner, "classnames", None), _attributes(self.learner) or 0  # (matches: > 0)
        if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
            raise AdapterError(
                f"{self.where} has num_attributes={per_class} but no list of class names (prompt_learner.classnames): "
                "cannot tell how many classes its prompt rows describe"
            )
        if len(names) * per_class != self.num_classes:
            raise AdapterError(
                f"{self.where}: {len(names)} class names x num_attributes {per_class} != {self.num_classes} prompt rows "
                "(a class with fewer attributes?); TCA's inference groups the rows by num_attributes, so this model "
                "is inconsistent"
            )

    @property
    def num_labels(self) -> int:
        return len(self.learner.classnames)
