"""The ordered registry of prompt-learner designs, and detection by walking it.

Detection asks every registered design whether the (unwrapped) model is of its kind. A known
refused layout that matches ends it with its reason; otherwise exactly one design must match,
where a design that subclasses another matching design refines it (DynaPrompt refines TPT) and
wins. Two unrelated matches are ambiguous: an error names both. The order is the order of
detection and of messages; the result never depends on it.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import AdapterError
from ._base import COMMON_MARKS, PromptDesign, describe, signature_text
from .cocoop import CoCoOpDesign
from .dart import DARTDesign
from .dynaprompt import DynaPromptDesign
from .fpp_reference import FPPReferenceDesign
from .maple import MaPLeDesign
from .refused import IT3ALayout, TAPTVLayout, TAPTVLILayout, TPSLayout
from .tca import TCADesign
from .tpt import TPTDesign
from .zero import ZeroMaPLeDesign

__all__ = ["register_design", "registered_designs", "detect", "unwrap"]

_WRAPPER_DEPTH = 8

#: the registry, in detection order: the built-in entries, then those registered later.
_DESIGNS: list[type[PromptDesign]] = [
    TPSLayout,
    IT3ALayout,
    TAPTVLILayout,
    TAPTVLayout,
    TPTDesign,
    TCADesign,
    FPPReferenceDesign,
    DynaPromptDesign,
    CoCoOpDesign,
    MaPLeDesign,
    ZeroMaPLeDesign,
    DARTDesign,
]


def register_design(design: type[PromptDesign]) -> type[PromptDesign]:
    """Add a :class:`PromptDesign` subclass to the registry (usable as a class decorator); returns it.

    From then on :func:`fpp_init.apply` recognises models of that design. Its ``name`` must be new.
    """
    if not (isinstance(design, type) and issubclass(design, PromptDesign)) or design is PromptDesign:
        raise AdapterError(f"register_design takes a PromptDesign subclass, not {design!r}")
    if not isinstance(design.name, str) or not design.name.strip():
        raise AdapterError(f"{design.__name__} has no short name (set the class attribute 'name')")
    taken = {d.name: d for d in _DESIGNS}
    if design.name in taken and taken[design.name] is not design:
        raise AdapterError(
            f"a design named {design.name!r} is already registered ({taken[design.name].__name__}); choose another name"
        )
    if design not in _DESIGNS:
        _DESIGNS.append(design)
    return design


def registered_designs() -> tuple[type[PromptDesign], ...]:
    """The registered designs and refused layouts, in detection order."""
    return tuple(_DESIGNS)


def unwrap(model: Any) -> Any:
    """Strip ``DataParallel`` / ``DistributedDataParallel``-style ``.module`` wrappers."""
    learners = {d.learner_attr for d in _DESIGNS}
    for _ in range(_WRAPPER_DEPTH):
        inner = getattr(model, "module", None)
        if isinstance(inner, nn.Module) and not any(hasattr(model, a) for a in learners):
            model = inner
        else:
            break
    return model


def detect(model: Any) -> PromptDesign:
    """The design of a live model (``.module`` wrappers unwrapped), bound to it.

    Raises :class:`AdapterError`: a refused layout (with its reason), a malformed model of a known
    design (what is wrong), two designs matching (naming both), or nothing matching (what was found).
    """
    root = unwrap(model)
    found = [d for d in _DESIGNS if d.matches(root)]
    for design in found:
        if design.refusal is not None:
            raise AdapterError(design.refusal)
    chosen = [d for d in found if not any(o is not d and issubclass(o, d) for o in found)]  # refinements win
    if len(chosen) > 1:
        names = " and ".join(f"{d.name!r} ({d.__module__}.{d.__qualname__}: {d.description})" for d in chosen)
        raise AdapterError(
            f"{type(root).__name__} matches several prompt-learner designs, {names}: fpp_init.apply cannot tell "
            "which one to use; make one design's matches() exclude the other, or subclass it to refine it"
        )
    if chosen:
        return chosen[0](root)
    raise AdapterError(_nothing_matches(root))


def _nothing_matches(root: Any) -> str:
    marks = tuple(dict.fromkeys(COMMON_MARKS + tuple(m for d in _DESIGNS for m in (d.learner_attr, *d.marks))))
    learners = [a for a in dict.fromkeys(d.learner_attr for d in _DESIGNS) if getattr(root, a, None) is not None]
    if not learners:
        return (
            f"fpp_init.apply needs a TPT-style model (an object with .prompt_learner and .text_encoder); got "
            f"{describe(root, marks)}. For a plain CLIP model use fpp_init.pretrain_flat_prompt"
        )
    supported = "; ".join(f"{d.name}: {d.description}" for d in _DESIGNS if d.refusal is None)
    encoder = getattr(root, "text_encoder", None)
    seen = "no text_encoder" if encoder is None else f"text_encoder {signature_text(encoder)}"
    return (
        f"found {describe(root, marks)}, its {learners[0]} {describe(getattr(root, learners[0]), marks)} and "
        f"{seen}: no supported prompt-learner design matches ({supported}). A TPT-style text encoder takes "
        "(prompts, tokenized_prompts), plus aux_outputs or compound_prompts_deeper_text"
    )
