"""ZERO's MaPLe path (FarinaMatteo/zero c609f7c, ``run.py --maple``: ``maple_clip/maple.py`` ``CustomCLIP``,
``MultiModalPromptLearner``, ``TextEncoder``; ``ttas/zero.py`` ``Zero``).

ZERO never tunes the prompt: every parameter is frozen, ``Zero.zero`` runs under ``no_grad``, and there is
no ``reset()`` and no ``ctx_init_state``. What it keeps are text features computed once from the ctx:
``Zero.z_txt`` on the TTA module and ``CustomCLIP.text_features``. So where other designs keep "the
codebase's reset restores the FPP ctx", this one keeps "every text feature ZERO uses is computed from the
installed ctx": it writes ``prompt_learner.ctx`` in place, creates no reset state, and drops both caches on
every write (install, class-set change, undo).

The learner is MaPLe's without PromptAlign's additions: no ``ctx_init_state`` and no ``tokenized_prompts``
(those are on the ``CustomCLIP``), so the design refines :class:`~fpp_init.adapters.maple.MaPLeDesign` and the
two never both apply. ``token_prefix`` / ``token_suffix`` exist only after ``CustomCLIP.reset_classnames``
(``tta_module.prepare_for_training``), which the design also hooks. The model is fp16 (MaPLe's
``build_model`` converts it, on the CPU too): FPP keeps an fp32 master ctx and installs it rounded. The deep
text prompts are fp32 Parameters that ZERO's text blocks round with ``.half()`` before use (PromptAlign's
and TAPT's do not), so the tower is given them rounded the same way.

``apply`` takes the ``CustomCLIP`` (``tta_module.model``) or the TTA module itself (an object with ``.model``
and no prompt learner): given the TTA module, the design also knows its ``z_txt`` cache and class names.
"""

from __future__ import annotations

import weakref
from typing import Any, cast

import torch
from torch import nn

from ..errors import AdapterError
from ._base import Snapshot, text_encoder_of
from .maple import MaPLeDesign

__all__ = ["ZeroMaPLeDesign", "ZERO_WARNING"]

#: warned (BeyondPaperWarning) when FPP is installed in ZERO's MaPLe model.
ZERO_WARNING = (
    "ZERO (MaPLe path): ZERO never tunes the prompt (it votes over augmented views at zero temperature), so "
    "the FPP prompt becomes its fixed prompt, not the start of test-time tuning that the paper evaluates; and "
    "as in MaPLe the ctx also feeds the image branch through prompt_learner.proj, which FPP's text-only "
    "objective ignores. This use is beyond the paper: compare with the MaPLe ctx before relying on it"
)

#: the TTA module a CustomCLIP was given through (weakly: neither keeps the other alive through this map).
_WRAPPERS: weakref.WeakKeyDictionary[Any, weakref.ReferenceType[Any]] = weakref.WeakKeyDictionary()
#: ZERO's text-feature caches: on the CustomCLIP (``forward`` with ``cache_text_features``) and the TTA module.
_MODEL_CACHE, _TTA_CACHE = "text_features", "z_txt"


def _inner(root: Any) -> Any:
    """The ``CustomCLIP``: ``root`` itself, or the ``.model`` of a ``ttas.BaseTTAModule``-style wrapper."""
    if getattr(root, "prompt_learner", None) is None and isinstance(getattr(root, "model", None), nn.Module):
        return root.model
    return root


class ZeroMaPLeDesign(MaPLeDesign):
    name = "zero_maple"
    description = "ZERO's MaPLe design (ctx without a reset state, cached text features)"
    required = ()
    replaced = ()
    beyond_paper = ZERO_WARNING

    @classmethod
    def learner_of(cls, root: Any) -> Any:
        return getattr(_inner(root), "prompt_learner", None)

    @classmethod
    def matches(cls, root: Any) -> bool:
        inner = _inner(root)
        learner = getattr(inner, "prompt_learner", None)
        if (
            learner is None
            or not isinstance(getattr(learner, "ctx", None), nn.Parameter)
            or hasattr(learner, "ctx_init_state")  # PromptAlign / TAPT keep one; ZERO has no reset
            or hasattr(learner, "tokenized_prompts")  # ZERO keeps it on the CustomCLIP
            or not callable(getattr(inner, "reset_classnames", None))
        ):
            return False
        return super().matches(inner)

    def __init__(self, root: Any) -> None:
        inner = _inner(root)
        if inner is not root:
            _WRAPPERS[inner] = weakref.ref(root)
        super().__init__(inner)

    # -- where ZERO keeps things ------------------------------------------------------------------
    @property
    def tokens(self) -> torch.Tensor:
        return cast(torch.Tensor, self.root.tokenized_prompts)

    @property
    def wrapper(self) -> Any:
        """The TTA module this model was given through (now or by an earlier ``apply``), if any."""
        ref = _WRAPPERS.get(self.root)
        return ref() if ref is not None else None

    def check_parts(self) -> None:
        root, lrn = self.root, self.learner
        if not isinstance(text_encoder_of(root), nn.Module):
            raise AdapterError(f"found ZERO's MaPLe {type(root).__name__} without a text_encoder module")
        built = [a for a in ("token_prefix", "token_suffix") if isinstance(getattr(lrn, a, None), torch.Tensor)]
        if len(built) < 2 or not isinstance(getattr(root, "tokenized_prompts", None), torch.Tensor):
            raise AdapterError(
                f"found ZERO's MaPLe {type(root).__name__} before its class set (no token_prefix, token_suffix or "
                "tokenized_prompts yet): call fpp_init.apply after tta_module.prepare_for_training(set_id, arch), "
                "whose reset_classnames builds them"
            )

    def classnames(self) -> list[str] | None:
        return self.label_names(getattr(self.wrapper, "classnames", None))

    def deep_prompts(self) -> list[torch.Tensor]:
        # ZERO's ResidualAttentionBlock_MaPLe inserts deep text prompt i as deep[i].half(): the tower sees them so
        return [p.detach().half().to(p.dtype) for p in self.learner.compound_prompts_text]

    # -- install and undo: ctx in place, caches dropped ---------------------------------------------
    def install(self, prompt_ctx: torch.Tensor) -> None:
        self.write_ctx(prompt_ctx)
        self.drop_caches()

    def restore(self, snap: Snapshot) -> None:
        super().restore(snap)
        self.drop_caches()

    def drop_caches(self) -> None:
        """Forget the text features ZERO computed from an earlier ctx; it recomputes them at its next sample."""
        self.root.__dict__.pop(_MODEL_CACHE, None)
        wrapper = self.wrapper
        if wrapper is not None:
            wrapper.__dict__.pop(_TTA_CACHE, None)
