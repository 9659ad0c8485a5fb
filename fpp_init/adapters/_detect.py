"""Recognise the design of a live TPT-family model object (never its repository name)."""

from __future__ import annotations

import enum
import inspect
from typing import Any

import torch
from torch import nn

from ..errors import AdapterError

__all__ = ["Family", "Convention", "unwrap", "detect", "encoder_convention"]

_WRAPPER_DEPTH = 8


class Family(str, enum.Enum):
    """The TPT-family designs ``fpp_init.apply`` supports (the value is the short name)."""

    TPT = "tpt"
    AUX = "aux"
    DYNAPROMPT = "dynaprompt"
    COCOOP = "cocoop"
    MAPLE = "maple"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]

    def __str__(self) -> str:
        return self.value


_DESCRIPTIONS = {
    Family.TPT: "TPT design (ctx + ctx_init_state)",
    Family.AUX: "FPP reference design (text encoder with aux_outputs)",
    Family.DYNAPROMPT: "DynaPrompt design (zero residual ctx + init_ctx)",
    Family.COCOOP: "CoCoOp design (prompt_generator.ctx + meta-net bias)",
    Family.MAPLE: "MaPLe / PromptAlign design (ctx + deep compound prompts)",
}


class Convention(str, enum.Enum):
    """How a text encoder is called."""

    PLAIN = "plain"  # text_encoder(prompts, tokenized_prompts)
    AUX = "aux"  # text_encoder(prompts, tokenized_prompts, aux_outputs) -> (x, aux_outputs)
    COMPOUND = "compound"  # text_encoder(prompts, tokenized_prompts, compound_prompts_deeper_text)


def unwrap(model: Any) -> Any:
    """Strip ``DataParallel`` / ``DistributedDataParallel``-style ``.module`` wrappers."""
    for _ in range(_WRAPPER_DEPTH):
        inner = getattr(model, "module", None)
        if isinstance(inner, nn.Module) and not hasattr(model, "prompt_learner"):
            model = inner
        else:
            break
    return model


def encoder_convention(encoder: Any) -> Convention:
    """How the text encoder is called: ``"plain"``, ``"aux"`` or ``"compound"``.

    ``plain``: ``text_encoder(prompts, tokenized_prompts)`` (TPT, C-TPT, O-TPT...);
    ``aux``: ``text_encoder(prompts, tokenized_prompts, aux_outputs)`` returning a tuple
    (the FPP reference code); ``compound``: ``text_encoder(prompts, tokenized_prompts,
    compound_prompts_deeper_text)`` (MaPLe / PromptAlign).
    """
    forward = getattr(encoder, "forward", encoder)
    try:
        params = list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError) as exc:
        raise AdapterError(f"cannot read the signature of the text encoder {type(encoder).__name__}: {exc}") from exc
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if "aux_outputs" in names:
        return Convention.AUX
    if any("compound" in n for n in names):
        return Convention.COMPOUND
    if len(names) >= 2:
        return Convention.PLAIN
    raise AdapterError(
        f"the text encoder {type(encoder).__name__}.forward{inspect.signature(forward)} does not take "
        "(prompts, tokenized_prompts); fpp_init.apply supports TPT-style text encoders only"
    )


def _describe(obj: Any) -> str:
    attrs = [
        a
        for a in (
            "prompt_learner",
            "prompt_generator",
            "text_encoder",
            "ctx",
            "ctx_init_state",
            "init_ctx",
            "ctx_list",
            "compound_prompts_text",
            "token_prefix",
            "token_suffix",
            "tokenized_prompts",
        )
        if hasattr(obj, a)
    ]
    return f"{type(obj).__module__}.{type(obj).__name__} with attributes {attrs or 'none of the TPT-family ones'}"


def detect(model: Any) -> tuple[Family, Any, Any]:
    """Return ``(family, root, prompt_learner)`` for a live model.

    Families, in this order of detection: ``"cocoop"`` (TPT's CoCoOp path: the prompt learner
    is ``model.prompt_generator``, with a meta-net), ``"maple"`` (MaPLe / PromptAlign:
    ``prompt_learner.compound_prompts_text``), ``"dynaprompt"``, then ``"tpt"`` (the standard
    design) or ``"aux"`` (the FPP reference's text encoder with ``aux_outputs``). Raises
    :class:`AdapterError` naming what was found for anything else.
    """
    root = unwrap(model)
    family: Family | None = None
    learner = getattr(root, "prompt_generator", None)
    if learner is not None:
        family = Family.COCOOP
    else:
        learner = getattr(root, "prompt_learner", None)
    if learner is None:
        raise AdapterError(
            f"fpp_init.apply needs a TPT-family model (an object with .prompt_learner and "
            f".text_encoder); got {_describe(root)}. For a plain CLIP model use "
            "fpp_init.pretrain_flat_prompt"
        )
    if family is None and hasattr(learner, "compound_prompts_text"):
        family = Family.MAPLE
        deep = learner.compound_prompts_text
        if not isinstance(deep, (nn.ParameterList, list, tuple)) or not all(isinstance(p, torch.Tensor) for p in deep):
            raise AdapterError(
                f"found a MaPLe-style prompt learner {_describe(learner)} whose compound_prompts_text is "
                f"{type(deep).__name__}, not a list of tensors"
            )
    if hasattr(learner, "class_token_prefix") or hasattr(learner, "concept_token_prefix"):
        raise AdapterError(
            "found TPS's ProtoTextPromptLearner (class_token_prefix / concept prompts): not supported by "
            "fpp_init.apply (TPS shifts class prototypes; its prompt layout differs from TPT's)"
        )
    if hasattr(learner, "ctx_list") or hasattr(learner, "ctx_init_state_list"):
        raise AdapterError(
            "found a prompt learner with several prompts (prompt_learner.ctx_list, e.g. DiffTPT's IT3A "
            "variant): not supported; fpp_init.apply installs one prompt per model. Use the main "
            "DiffTPT script (tpt_classification.py), which has a single ctx"
        )
    text_encoder = getattr(root, "text_encoder", None)
    if not isinstance(text_encoder, nn.Module):
        raise AdapterError(f"found {_describe(root)} but no text_encoder module beside the prompt learner")
    ctx = getattr(learner, "ctx", None)
    if not isinstance(ctx, nn.Parameter):
        raise AdapterError(f"found a prompt learner {_describe(learner)} without an nn.Parameter 'ctx'")
    if family != Family.COCOOP and not isinstance(getattr(learner, "ctx_init_state", None), torch.Tensor):
        raise AdapterError(
            f"found a prompt learner {_describe(learner)} without a 'ctx_init_state' tensor (the state its "
            "reset() restores); not a TPT-style prompt learner"
        )
    missing = [a for a in ("token_prefix", "token_suffix", "tokenized_prompts") if not hasattr(learner, a)]
    if missing:
        raise AdapterError(f"found a prompt learner {_describe(learner)} without {missing}")
    convention = encoder_convention(text_encoder)
    if family == Family.MAPLE:
        if convention != Convention.COMPOUND:
            raise AdapterError(
                f"found a MaPLe-style prompt learner (compound_prompts_text) but the text encoder "
                f"{type(text_encoder).__name__} does not take compound_prompts_deeper_text; unsupported design"
            )
        return family, root, learner
    if convention == Convention.COMPOUND:
        raise AdapterError(
            "the text encoder takes compound (deep) prompts but the prompt learner has no "
            "compound_prompts_text; unsupported design"
        )
    if family == Family.COCOOP:
        return family, root, learner
    if isinstance(getattr(learner, "init_ctx", None), torch.Tensor):
        return Family.DYNAPROMPT, root, learner
    return (Family.AUX if convention == Convention.AUX else Family.TPT), root, learner
