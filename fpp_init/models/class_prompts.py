"""The one prompt builder: ``template + " " + class name + "."`` as embedded prompts, for any library."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from .. import constants as const
from .._validate import check_ctx, check_template
from ..algorithm import EmbeddedPrompts
from ..errors import ClassNameError, ContextLengthWarning, TemplateError
from ._base import TextModel

__all__ = ["ClassPrompts", "build_class_prompts", "template_n_ctx"]


@dataclass
class ClassPrompts:
    """Embedded prompts of a class set (CPU, fp32) and the predefined ctx they are aligned with.

    ``template`` is the template used (``None`` when a predefined ctx tensor was given);
    ``classnames`` is ``None`` for the class-agnostic placeholder prompts.
    """

    prompts: EmbeddedPrompts
    predefined_ctx: torch.Tensor
    template: str | None
    classnames: list[str] | None

    @property
    def n_ctx(self) -> int:
        return int(self.predefined_ctx.shape[0])

    @property
    def num_classes(self) -> int:
        return self.prompts.num_classes


def template_n_ctx(tm: TextModel, template: str) -> int:
    """How many context vectors a template gives (its token count); :class:`TemplateError` if none."""
    n = len(tm.tokenizer.encode(template))
    if n == 0:
        raise TemplateError(f"template {template!r} gives no tokens; use words such as {const.DEFAULT_TEMPLATE!r}")
    return n


def _tokenize(tm: TextModel, lead: str, shown: list[str], names: list[str] | None) -> tuple[torch.Tensor, list[int]]:
    tok, length = tm.tokenizer, tm.context_length
    lead_ids = tok.encode(lead)
    tokens = torch.full((len(shown), length), tok.pad_id, dtype=torch.long)
    for i, name in enumerate(shown):
        text = f"{lead} {name}."
        ids = [tok.sot_id, *tok.encode(text), tok.eot_id]
        if len(ids) > length:
            what = f"class name {names[i]!r}" if names else f"prompt {text!r}"
            raise ClassNameError(
                f"{what} is too long: its prompt {text!r} takes {len(ids)} tokens but the model's "
                f"context length is {length}; shorten the name or the template"
            )
        if ids[1 : 1 + len(lead_ids)] != lead_ids:
            raise TemplateError(
                f"the template's tokens change when the class name follows it ({text!r}); "
                "end the template with a whole word"
            )
        tokens[i, : len(ids)] = torch.tensor(ids)
    return tokens, lead_ids


def build_class_prompts(
    tm: TextModel,
    classnames: list[str] | None,
    *,
    num_classes: int = 1,
    template: str | None = const.DEFAULT_TEMPLATE,
    predefined_ctx: torch.Tensor | None = None,
) -> ClassPrompts:
    """Embedded prompts ``lead + " " + name + "."`` of ``classnames`` (or ``num_classes`` class-agnostic
    placeholders when ``classnames`` is ``None``).

    The lead is ``template`` and the predefined ctx is the template's token embeddings; or, when
    ``predefined_ctx`` is given, ``n_ctx`` placeholder words whose embeddings the ctx replaces.
    A template that gives another context length than TPT's default (4) warns
    (:class:`~fpp_init.errors.ContextLengthWarning`).
    """
    if predefined_ctx is not None:
        given = check_ctx(predefined_ctx, "predefined_ctx", width=tm.width).float().cpu()
        lead, used_template = " ".join(["X"] * given.shape[0]), None
    else:
        given, used_template = None, check_template(template)
        lead = used_template
        n = template_n_ctx(tm, used_template)
        if n != const.TPT_N_CTX:
            warnings.warn(
                f"template {used_template!r} gives {n} context vectors, not {const.TPT_N_CTX} as TPT-family "
                f"models built with {const.DEFAULT_TEMPLATE!r} (--ctx_init a_photo_of_a); such a model will refuse "
                "this prompt. Check the template for typos",
                ContextLengthWarning,
                stacklevel=3,
            )
    shown = (
        [const.AGNOSTIC_PLACEHOLDER] * num_classes if classnames is None else [s.replace("_", " ") for s in classnames]
    )
    tokens, lead_ids = _tokenize(tm, lead, shown, classnames)
    n_ctx = len(lead_ids)
    eot_pos = tm.read_positions(tokens)
    if bool((eot_pos <= n_ctx + 1).any()):
        raise TemplateError("prompt tokenisation left no class token after the context")
    used = int(eot_pos.max()) + 1
    with torch.no_grad():
        weight = tm.token_embedding
        emb = weight[tokens[:, :used].to(weight.device)].float().cpu()
    predefined = given if given is not None else emb[0, 1 : 1 + n_ctx].clone()
    prompts = EmbeddedPrompts(prefix=emb[:, :1], suffix=emb[:, 1 + n_ctx :], eot_pos=eot_pos)
    return ClassPrompts(prompts, predefined, used_template, classnames)
