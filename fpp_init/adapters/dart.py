"""The DART design (zhoujiahuan1991/AAAI2024-DART dbdfa2b, ``clip/my_clip_CSTP.py`` ``ClipTestTimeTuning``,
``main.py --myclip --CSTP 1 --learnable_text a``).

DART keeps one text context per class, ``text_prompts_a`` (an ``nn.Parameter`` ``[C, n_ctx, D]``), and no
prompt learner or text-encoder module: ``get_text_features()`` concatenates ``text_prompts_begin`` (SOS),
``text_prompts_a``, ``text_prompts_class`` (the class name's first token) and ``text_prompts_end`` and runs
CLIP's text tower over ``model.clip``. Its per-sample ``reset_Tclass_prompts()`` copies
``text_prompts_a_init`` back; ``init_text_prompts(classnames)`` builds everything for a class set, with a new
Parameter each time. The prompts have no final ``"."`` (the text is ``ctx_init.replace("CLS", name)``).

**Why the shared FPP ctx goes into every class row, not a prompt pretrained per class.** DART starts every
class from the same context: ``init_text_prompts`` cuts every row of ``text_prompts_a`` from the same template
words. Class-specific contexts are DART's *test-time* mechanism: each sample tunes all rows together, and a
per-class EMA (``Text_EMA.update_one_weight``) folds the tuned row of the predicted class into that class's
shadow, from which the next samples start. FPP's objective is class-shared too (one ctx, aligned and flat
over the whole class set, ``lambda = 1 + 15/C``); pretraining per class would be C runs with C = 1 (lambda
16, no class set to be flat over), which is not the paper's method, costs C times as much, and would pre-empt
the specialisation DART does itself. So FPP is pretrained once on DART's own prompts for the class set,
aligned with the template rows, and written into every row of ``text_prompts_a`` (in place) and
``text_prompts_a_init``, exactly where DART puts the template. (A per-class start remains possible by hand:
``pretrain_flat_prompt(..., [name])`` per class.)

The tower is CLIP's text tower over ``model.clip``'s parts (its fingerprint is ``fingerprint_model(model.clip)``,
so prompt files pretrained on the same CLIP install), checked against DART's own ``get_text_features()``.
``init_text_prompts`` is hooked; since it replaces the Parameter, the originals are kept for the Parameter
they belong to, and ``remove()`` restores the current class set's template rows.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from ..errors import AdapterError
from ..towers import CausalTextTower, TextTower
from ..towers._base import attr_as
from ._base import PromptDesign, Snapshot, describe, features_agree, single

__all__ = ["DARTDesign"]

_PARTS = ("text_prompts_a", "text_prompts_a_init", "text_prompts_begin", "text_prompts_class", "text_prompts_end")
_TOKENS = "text_prompts_token"
_SERVED = {
    "CSTP": (1, "one context per class"),
    "learnable_text": ("a", "the context words only"),
    "share_prompts": (0, "no shared prompts"),
}


def _is_dart(root: Any) -> bool:
    return all(callable(getattr(root, m, None)) for m in ("init_text_prompts", "reset_Tclass_prompts")) and isinstance(
        getattr(root, "clip", None), nn.Module
    )


class _CLIPText(nn.Module):
    """The text half of DART's ``get_text_features`` as ``(prompts, tokenized_prompts) -> features`` over
    ``model.clip``'s own modules (shared, not copied; never registered on DART's model)."""

    transformer: nn.Module
    positional_embedding: torch.Tensor
    ln_final: nn.Module
    text_projection: torch.Tensor
    dtype: torch.dtype

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.transformer = attr_as(clip, "transformer", nn.Module)
        self.positional_embedding = attr_as(clip, "positional_embedding", torch.Tensor)
        self.ln_final = attr_as(clip, "ln_final", nn.Module)
        self.text_projection = attr_as(clip, "text_projection", torch.Tensor)
        self.dtype = attr_as(clip, "dtype", torch.dtype)

    def forward(self, prompts: torch.Tensor, tokenized_prompts: torch.Tensor) -> torch.Tensor:
        x = prompts + self.positional_embedding.type(self.dtype)
        x = cast(torch.Tensor, self.transformer(x.permute(1, 0, 2))).permute(1, 0, 2)
        x = cast(torch.Tensor, self.ln_final(x)).type(self.dtype)
        return x[torch.arange(x.shape[0]), tokenized_prompts.argmax(dim=-1)] @ self.text_projection


class DARTDesign(PromptDesign):
    name = "dart"
    description = "DART design (one context per class: text_prompts_a)"
    learner_attr = "text_prompts_a"  # the model itself is the learner (see learner_of)
    required = ()
    replaced = ()
    marks = (*_PARTS, _TOKENS)
    hook = "init_text_prompts"

    @classmethod
    def learner_of(cls, root: Any) -> Any:
        return root if _is_dart(root) else None

    @classmethod
    def matches(cls, root: Any) -> bool:
        return _is_dart(root)

    def __init__(self, root: Any) -> None:
        self._encoder = _CLIPText(root.clip) if isinstance(getattr(root, "clip", None), nn.Module) else None
        self._originals: tuple[nn.Parameter, torch.Tensor, Any] | None = None  # (Parameter, its values, its _init)
        super().__init__(root)

    # -- where DART keeps things ------------------------------------------------------------------
    @property
    def text_encoder(self) -> nn.Module:
        return cast(nn.Module, self._encoder)  # check_parts refused a model without model.clip

    @property
    def ctx(self) -> nn.Parameter:
        return cast(nn.Parameter, self.root.text_prompts_a)

    @property
    def prefix(self) -> torch.Tensor:
        return cast(torch.Tensor, self.root.text_prompts_begin)

    @property
    def suffix(self) -> torch.Tensor:
        return torch.cat([self.root.text_prompts_class, self.root.text_prompts_end], dim=1)

    @property
    def tokens(self) -> torch.Tensor:
        return cast(torch.Tensor, getattr(self.root, _TOKENS))

    def check_parts(self) -> None:
        root = self.root
        args = getattr(root, "args", None)
        bad = [
            f"--{flag} {getattr(args, flag)!r} (fpp_init serves {want!r}: {what})"
            for flag, (want, what) in _SERVED.items()
            if getattr(args, flag, want) != want
        ]
        if bad:
            raise AdapterError(f"found DART's {type(root).__name__} with " + "; ".join(bad))
        if self._encoder is None or any(not hasattr(root.clip, a) for a in ("transformer", "ln_final")):
            raise AdapterError(f"found DART's {type(root).__name__} without its CLIP text tower in .clip")
        missing = [a for a in (*_PARTS, _TOKENS) if not isinstance(getattr(root, a, None), torch.Tensor)]
        if missing:
            raise AdapterError(
                f"found DART's {type(root).__name__} without {missing}: call fpp_init.apply after "
                "model.init_text_prompts(classnames), which builds the class set's text prompts"
            )
        if not isinstance(root.text_prompts_a, nn.Parameter) or root.text_prompts_a.dim() != 3:
            raise AdapterError(f"{describe(root, self.marks)}: text_prompts_a is not an nn.Parameter [C, n_ctx, D]")
        init = root.text_prompts_a_init
        if init.shape != root.text_prompts_a.shape or not bool((init == init[:1]).all()):
            raise AdapterError(
                f"found DART's {type(root).__name__} whose text_prompts_a_init {tuple(init.shape)} does not hold the "
                "same context in every class row (DART's initialisation): not supported"
            )

    def classnames(self) -> list[str] | None:
        return self.label_names(getattr(self.root, "classnames", None))

    def template(self) -> str | None:
        return None  # the words are DART's ctx_init as its (bugged or fixed) parsing tokenised them: read, not known

    def current_init(self) -> torch.Tensor:
        return single(self.root.text_prompts_a_init, "text_prompts_a_init")

    # -- the tower, checked against DART's own get_text_features -----------------------------------
    def tower(self) -> TextTower:
        spec = self.spec()
        tower = CausalTextTower(spec) if spec is not None else self.encoder_tower()
        if not self.agrees(tower):
            raise AdapterError(
                f"DART's {type(self.root).__name__}.get_text_features() does not give CLIP's text features of its own "
                "prompts (begin + text_prompts_a + class + end through model.clip): a modified DART; not supported"
            )
        return tower

    def agrees(self, tower: TextTower) -> bool:
        root = self.root
        x = torch.cat([self.prefix, root.text_prompts_a, self.suffix], dim=1).detach().to(self.device)
        with torch.no_grad():
            ref = root.get_text_features()
            got = tower.encode(x.to(tower.dtype), self.embedded().eot_pos)
        return features_agree(ref, got, tower.dtype)

    # -- install and undo, per class set ----------------------------------------------------------
    def install(self, prompt_ctx: torch.Tensor) -> None:
        root = self.root
        param = root.text_prompts_a
        if self._originals is None or self._originals[0] is not param:  # a new class set: init_text_prompts ran
            self._originals = (param, param.detach().clone(), root.text_prompts_a_init)
        rows = self.write_ctx(prompt_ctx)  # every class row of text_prompts_a, in place
        old = root.text_prompts_a_init
        root.text_prompts_a_init = rows.to(old.device, old.dtype).clone(memory_format=torch.contiguous_format)

    def snapshot(self) -> Snapshot:
        return Snapshot(torch.empty(0))  # the originals are kept per class set, by install()

    def restore(self, snap: Snapshot) -> None:
        if self._originals is not None and self._originals[0] is self.root.text_prompts_a:
            param, values, init = self._originals
            with torch.no_grad():
                param.copy_(values)
            self.root.text_prompts_a_init = init
        self._originals = None
