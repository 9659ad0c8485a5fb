"""``sharpness``: data-free flatness of a prompt, on a CLIP model or a live TPT-family model."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .. import constants as const
from .._runtime import frozen
from .._validate import check_bool, check_classnames, check_ctx, check_device, check_str
from ..adapters import detect
from ..algorithm import SharpnessResult, measure_sharpness
from ..artifacts import FPPPrompt
from ..artifacts.sources import is_prompt_path, read_source
from ..config import FPPConfig, SharpnessConfig, as_config
from ..errors import ClassNameError, ConfigError, ContextLengthWarning, PromptMismatchWarning, TemplateError
from ..models import build_class_prompts, text_model
from ._apply import FPPHandle

__all__ = ["sharpness"]

_MEASURE_FIELDS = {f.name for f in dataclasses.fields(SharpnessConfig)}


def _split_fields(config: Any, config_fields: dict[str, Any]) -> tuple[FPPConfig, SharpnessConfig]:
    """Keyword fields go to :class:`SharpnessConfig` (what to measure) or to the :class:`FPPConfig`
    (the noise: ``ctx_noise``, ``cls_noise``; execution: ``chunk_classes``, ``share_prefix``)."""
    measure = {k: v for k, v in config_fields.items() if k in _MEASURE_FIELDS}
    noise = {k: v for k, v in config_fields.items() if k not in _MEASURE_FIELDS}
    return as_config(config, noise), SharpnessConfig().replace(**measure)


def _source(source: Any) -> tuple[str, torch.Tensor | str, FPPPrompt | None]:
    """``(label, ctx tensor or template text, FPPPrompt or None)`` of any accepted source."""
    if isinstance(source, FPPPrompt):
        return ("FPP prompt" if source.template is None else f"FPP ({source.template!r})"), source.ctx, source
    if isinstance(source, torch.Tensor):
        return "ctx tensor", check_ctx(source, "source"), None
    if isinstance(source, os.PathLike) or (isinstance(source, str) and is_prompt_path(source)):
        loaded = read_source(source).prompt
        return Path(source).stem, loaded.ctx, loaded
    if isinstance(source, str):
        return f"template {source!r}", check_str(source, "source", error=TemplateError), None
    raise ConfigError(
        "source must be a template string, an FPPPrompt, a prompt file path or a ctx tensor [n_ctx, D]; "
        f"got {type(source).__name__}",
        param="source",
    )


def sharpness(
    model: Any,
    source: Any = None,
    classnames: Sequence[str] | None = None,
    *,
    template: str | None = None,
    predefined_ctx: torch.Tensor | None = None,
    label: str | None = None,
    config: FPPConfig | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    **config_fields: Any,
) -> SharpnessResult:
    """How flat a prompt's text features are: data-free, the quantity FPP optimises.

    Args:
        model: a CLIP model (object or reference, as for :func:`pretrain_flat_prompt`); or a
            live TPT-family model (what :func:`fpp_init.apply` accepts) or the
            :class:`~fpp_init.FPPHandle` it returned: then the model's own text encoder, class
            set and prompt layout are used (the same path as the adapters).
        source: what to measure: a hand-written template (``"a photo of a"``), an
            :class:`~fpp_init.FPPPrompt`, the path of a prompt file, or a ctx tensor ``[n_ctx, D]``.
            For a live model: ``None`` (default) measures its current initial ctx (what
            ``reset()`` restores); templates are not accepted there (pass a tensor).
        classnames: the class set (default: the FPP prompt's own class names). Not for live
            models, which measure their current class set.
        template: the hand-written prompt the alignment distance is measured to (as in
            :func:`pretrain_flat_prompt`); default: the FPP prompt's template, else ``"a photo of
            a"``; for a live model its current initial ctx, or for an ``FPPHandle`` the original
            one. It must have the source's ``n_ctx``.
        predefined_ctx: a ctx tensor to measure the alignment to instead of ``template``.
        label: name in tables and plots (default: derived from ``source``).
        config: the noise (``ctx_noise``, ``cls_noise``) and execution options of an
            :class:`FPPConfig` (default: the paper's noise).
        device: where to compute (default: the model's device).
        progress: show a tqdm bar.
        config_fields: :class:`~fpp_init.config.SharpnessConfig` fields (``factors``, ``draws``,
            ``seed``, ``landscape``, ``span``, ``points``, ``points2d``, ``direction_norm``) or
            :class:`FPPConfig` fields (``ctx_noise=...``).

    Returns:
        :class:`SharpnessResult` (``cos_drop`` per factor, ``align``, optional ``landscape``).
        The model's ``requires_grad`` flags and train/eval mode are left as found.
    """
    cfg, measure = _split_fields(config, config_fields)
    check_bool(progress, "progress")
    check_str(label, "label", allow_none=True)
    if template is not None and predefined_ctx is not None:
        raise ConfigError("pass template or predefined_ctx, not both", param="template")
    if isinstance(model, FPPHandle) or hasattr(getattr(model, "module", model), "prompt_learner"):
        return _live(model, source, classnames, template, predefined_ctx, label, cfg, measure, device, progress)
    if source is None:
        raise ConfigError(
            "pass the prompt to measure: a template, an FPPPrompt, a prompt file or a ctx tensor", param="source"
        )
    name, ctx_or_text, fpp = _source(source)
    if classnames is None:
        if fpp is None or not fpp.classnames:
            raise ClassNameError("classnames is required (the prompt carries no class names)")
        names = check_classnames(fpp.classnames, repeats="allow")  # the file's own record
    else:
        names = check_classnames(classnames)
    tm = text_model(model, device=device)
    if predefined_ctx is None and template is None:
        template = fpp.template if fpp is not None and fpp.template else const.DEFAULT_TEMPLATE
    with warnings.catch_warnings():  # measuring a template of another length is legitimate here
        warnings.simplefilter("ignore", ContextLengthWarning)
        classes = build_class_prompts(tm, names, template=template, predefined_ctx=predefined_ctx)
        ctx = (
            build_class_prompts(tm, names[:1], template=ctx_or_text).predefined_ctx
            if isinstance(ctx_or_text, str)
            else check_ctx(ctx_or_text, "source", width=tm.width).float().cpu()
        )
    if fpp is not None and fpp.fingerprint and fpp.fingerprint != tm.fingerprint():
        warnings.warn(
            f"prompt {name} was pretrained for another text tower (fingerprint mismatch)",
            PromptMismatchWarning,
            stacklevel=2,
        )
    with frozen([tm.model]):
        return measure_sharpness(
            tm.tower, classes.prompts, ctx, classes.predefined_ctx, config=cfg, measure=measure, label=label or name,
            device=tm.device, progress=progress,
        )  # fmt: skip


def _live(
    model: Any,
    source: Any,
    classnames: Any,
    template: Any,
    predefined_ctx: Any,
    label: str | None,
    cfg: FPPConfig,
    measure: SharpnessConfig,
    device: Any,
    progress: bool,
) -> SharpnessResult:
    """Sharpness on a live TPT-family model, through the adapters' tower and embedded prompts."""
    original = None
    if isinstance(model, FPPHandle):
        original = model.predefined
        model = model.model
    live = detect(model)
    if classnames is not None:
        raise ConfigError(
            "a live model is measured on its own class set; call its reset_classnames(...) instead of passing classnames",
            param="classnames",
        )
    if template is not None or (isinstance(source, str) and not is_prompt_path(source)):
        raise ConfigError(
            "templates are not accepted for a live model (its tokenizer is not reachable); pass a ctx "
            "tensor, an FPPPrompt or a prompt file",
            param="template",
        )
    if source is None:
        name, ctx = "current init", live.current_init()
    else:
        name, found, _ = _source(source)
        assert isinstance(found, torch.Tensor)  # a template (the one str source) was refused above
        ctx = found.detach().float().cpu()
    reference = (
        predefined_ctx if predefined_ctx is not None else original if original is not None else live.current_init()
    )
    reference = check_ctx(reference, "predefined_ctx", width=live.width)
    dev = check_device(device) if device is not None else live.device
    with frozen([live.text_encoder]):
        return measure_sharpness(
            live.tower(), live.embedded(), check_ctx(ctx, "source", width=live.width), reference.float().cpu(),
            config=cfg, measure=measure, label=label or name, device=dev, progress=progress,
        )  # fmt: skip
