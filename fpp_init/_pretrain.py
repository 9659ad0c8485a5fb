"""The front door: ``pretrain_flat_prompt`` for clip-anytorch models, names and checkpoints."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from . import constants as C
from ._algorithm import EmbeddedPrompts, FPPResult, optimize_flat_prompt
from ._cache import cache_key, lookup, resolve_cache_dir, store
from ._utils import frozen
from .config import FPPConfig
from .errors import ClassNameError, ConfigError, ModelLoadError, PromptShapeError, TemplateError
from .prompt import FPPPrompt
from .towers import CLIPTextTower, fingerprint_text_tower

logger = logging.getLogger(__name__)

__all__ = ["pretrain_flat_prompt", "fingerprint_model", "infer_backbone"]

_CLIP_TEXT_PARTS = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")

# (vision width, patch size, input resolution) -> name
_VIT_NAMES = {
    (768, 32, 224): "ViT-B/32",
    (768, 16, 224): "ViT-B/16",
    (1024, 14, 224): "ViT-L/14",
    (1024, 14, 336): "ViT-L/14@336px",
}
# (blocks per stage, stem width) -> name
_RN_NAMES = {
    ((3, 4, 6, 3), 64): "RN50",
    ((3, 4, 23, 3), 64): "RN101",
    ((4, 6, 10, 6), 80): "RN50x4",
    ((6, 8, 18, 8), 96): "RN50x16",
    ((3, 15, 36, 10), 128): "RN50x64",
}


def infer_backbone(model: nn.Module) -> str | None:
    """The OpenAI CLIP name whose shapes ``model`` has, or ``None``."""
    visual = getattr(model, "visual", None)
    try:
        if hasattr(visual, "transformer"):  # VisionTransformer
            key = (visual.conv1.out_channels, visual.conv1.kernel_size[0], visual.input_resolution)
            return _VIT_NAMES.get(key)
        if hasattr(visual, "layer4"):  # ModifiedResNet
            blocks = tuple(len(getattr(visual, f"layer{i}")) for i in range(1, 5))
            return _RN_NAMES.get((blocks, visual.conv1.out_channels * 2))
    except (AttributeError, TypeError, IndexError):
        return None
    return None


def _check_clip_model(model: Any) -> nn.Module:
    missing = [a for a in _CLIP_TEXT_PARTS if not hasattr(model, a)]
    if not isinstance(model, nn.Module) or missing:
        hint = (
            " It looks like a TPT-family model: use fpp_init.apply(model) instead."
            if hasattr(model, "prompt_learner")
            else ""
        )
        raise ModelLoadError(
            f"expected a CLIP model (clip-anytorch), a model name or a checkpoint path; got "
            f"{type(model).__name__} without {missing or 'nn.Module'}.{hint}"
        )
    return model


def fingerprint_model(model: nn.Module) -> str:
    """Fingerprint of a CLIP model's text tower (same for fp16/fp32 copies and any device)."""
    return fingerprint_text_tower(_check_clip_model(model))


def _validate_classnames(classnames: Any) -> list[str]:
    if isinstance(classnames, str) or not isinstance(classnames, Sequence):
        raise ClassNameError(
            f"classnames must be a list of strings, got {type(classnames).__name__}"
            + (" (wrap a single name in a list)" if isinstance(classnames, str) else "")
        )
    names = list(classnames)
    if not names:
        raise ClassNameError("classnames is empty; pass at least one class name or use class_agnostic=True")
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise ClassNameError(f"classnames[{i}] is {type(name).__name__} ({name!r}), not a string")
        if not name.strip():
            raise ClassNameError(f"classnames[{i}] is empty or blank")
    return names


def _validate_template(template: Any) -> str:
    if not isinstance(template, str) or not template.strip():
        raise TemplateError(f"template must be a non-empty string such as {C.DEFAULT_TEMPLATE!r}, got {template!r}")
    for marker in ("[CLS]", "{}", "{classname}"):
        if marker in template:
            raise TemplateError(
                f"template {template!r} places the class name with {marker!r}; FPP supports only the "
                f"class at the end: give the words before it, e.g. {C.DEFAULT_TEMPLATE!r}"
            )
    return " ".join(template.split())


def _validate_ctx(name: str, ctx: Any, width: int, n_ctx: int | None = None) -> torch.Tensor:
    if not isinstance(ctx, torch.Tensor):
        raise PromptShapeError(f"{name} must be a torch.Tensor [n_ctx, {width}], got {type(ctx).__name__}")
    if ctx.dim() != 2:
        raise PromptShapeError(f"{name} must have shape [n_ctx, {width}], got {tuple(ctx.shape)}")
    if not ctx.is_floating_point():
        raise PromptShapeError(f"{name} must be a floating-point tensor, got {ctx.dtype}")
    if ctx.shape[1] != width:
        raise PromptShapeError(
            f"{name} has width {ctx.shape[1]} but the model's text tower has width {width} "
            "(a prompt of another backbone?)"
        )
    if n_ctx is not None and ctx.shape[0] != n_ctx:
        raise PromptShapeError(f"{name} has {ctx.shape[0]} context vectors, expected {n_ctx}")
    if ctx.shape[0] < 1:
        raise PromptShapeError(f"{name} has no context vectors")
    if not bool(torch.isfinite(ctx).all()):
        raise PromptShapeError(f"{name} contains NaN or Inf")
    return ctx.detach()


def _resolve_model(model: Any, device: str | torch.device | None) -> tuple[nn.Module, torch.device, str | None]:
    if isinstance(model, (str, os.PathLike)):
        dev = (
            torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        )
        from ._clip import load_clip_model

        loaded = load_clip_model(model, dev)
        name = os.fspath(model)
        backbone = infer_backbone(loaded) or (Path(name).name if os.path.exists(name) else name)
        return loaded, dev, backbone
    model = _check_clip_model(model)
    model_device = model.positional_embedding.device
    if (
        device is not None
        and torch.device(device) != model_device
        and not (torch.device(device).type == model_device.type and torch.device(device).index is None)
    ):
        raise ConfigError(f"device={device!r} but the model is on {model_device}; move the model first or omit device")
    return model, model_device, infer_backbone(model)


def _tokenize(texts: list[str], length: int, names: list[str] | None) -> torch.Tensor:
    from ._clip import tokenizer

    tok = tokenizer()
    sot, eot = tok.encoder["<|startoftext|>"], tok.encoder["<|endoftext|>"]
    out = torch.zeros(len(texts), length, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [sot, *tok.encode(text), eot]
        if len(ids) > length:
            what = f"class name {names[i]!r}" if names else f"prompt {text!r}"
            raise ClassNameError(
                f"{what} is too long: its prompt {text!r} takes {len(ids)} tokens but the model's "
                f"context length is {length}; shorten the name or the template"
            )
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def _text_setup(
    clip_model: nn.Module, template: str, predefined_ctx: torch.Tensor | None
) -> tuple[CLIPTextTower, torch.Tensor | None, int, str, str | None]:
    """``(tower, validated predefined ctx or None, n_ctx, text standing for the ctx, template used)``."""
    width = clip_model.positional_embedding.shape[-1]
    if not CLIPTextTower.supports(clip_model.transformer, clip_model.positional_embedding):
        raise ModelLoadError("the model's text transformer is not an OpenAI-CLIP-style causal transformer")
    tower = CLIPTextTower.from_clip_model(clip_model)
    if predefined_ctx is not None:
        predefined = _validate_ctx("predefined_ctx", predefined_ctx, width).float().cpu()
        n_ctx = predefined.shape[0]
        return tower, predefined, n_ctx, " ".join(["X"] * n_ctx), None
    from ._clip import tokenizer

    return tower, None, len(tokenizer().encode(template)), template, template


def _embed_class_prompts(
    clip_model: nn.Module,
    dev: torch.device,
    names: list[str] | None,
    n: int,
    n_ctx: int,
    lead: str,
    predefined: torch.Tensor | None,
) -> tuple[EmbeddedPrompts, torch.Tensor]:
    """Embedded prompts ``lead + " " + name + "."`` (CPU, fp32) and the predefined ctx.

    ``names=None`` uses the class-agnostic placeholder ``n`` times; ``predefined=None``
    takes the ctx from the embeddings of ``lead`` (the template).
    """
    length = clip_model.positional_embedding.shape[-2]
    shown = [C.AGNOSTIC_PLACEHOLDER] * n if names is None else [s.replace("_", " ") for s in names]
    tokens = _tokenize([f"{lead} {s}." for s in shown], length, names)
    eot = tokens.argmax(dim=-1)
    if bool((eot <= n_ctx + 1).any()):
        raise TemplateError("prompt tokenisation left no class token after the context")
    with torch.no_grad():
        emb = clip_model.token_embedding(tokens.to(dev)).float().cpu()
    if predefined is None:
        predefined = emb[0, 1 : 1 + n_ctx].clone()
    return EmbeddedPrompts(prefix=emb[:, :1], suffix=emb[:, 1 + n_ctx :], eot=eot), predefined


class TextInputs(NamedTuple):
    """What the FPP maths needs from a clip-anytorch model (see :func:`build_text_inputs`)."""

    model: nn.Module
    tower: CLIPTextTower
    prompts: EmbeddedPrompts
    predefined_ctx: torch.Tensor
    device: torch.device
    backbone: str | None
    template: str | None


def build_text_inputs(
    model: nn.Module | str | os.PathLike[str],
    classnames: Sequence[str],
    *,
    template: str = C.DEFAULT_TEMPLATE,
    predefined_ctx: torch.Tensor | None = None,
    device: str | torch.device | None = None,
) -> TextInputs:
    """Text tower, embedded class prompts and predefined ctx, exactly as ``pretrain_flat_prompt`` builds them."""
    names = _validate_classnames(classnames)
    if predefined_ctx is None:
        template = _validate_template(template)
    clip_model, dev, backbone = _resolve_model(model, device)
    tower, given, n_ctx, lead, used_template = _text_setup(clip_model, template, predefined_ctx)
    prompts, predefined = _embed_class_prompts(clip_model, dev, names, len(names), n_ctx, lead, given)
    return TextInputs(clip_model, tower, prompts, predefined, dev, backbone, used_template)


def prompt_from_result(result: FPPResult, config: FPPConfig, **meta: Any) -> FPPPrompt:
    """The :class:`FPPPrompt` of an optimiser run: its ctx, history and final losses, the config
    with the ``flat_weight`` actually used, and the provenance fields in ``meta``."""
    return FPPPrompt(
        ctx=result.ctx,
        config={**config.to_dict(), "flat_weight": result.flat_weight},
        final_losses=result.final_losses,
        history=result.history,
        **meta,
    )


def pretrain_flat_prompt(
    model: nn.Module | str | os.PathLike[str] = C.DEFAULT_ARCH,
    classnames: Sequence[str] | None = None,
    *,
    class_agnostic: bool = False,
    num_classes: int | None = None,
    template: str = C.DEFAULT_TEMPLATE,
    predefined_ctx: torch.Tensor | None = None,
    init_ctx: torch.Tensor | None = None,
    config: FPPConfig | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    cache: bool | str | os.PathLike[str] = False,
    **options: Any,
) -> FPPPrompt:
    """Pretrain flat context vectors for a CLIP model (FPP, CVPR 2026).

    Args:
        model: a clip-anytorch CLIP model, a model name (``"ViT-B/16"``; downloaded by
            ``clip.load``) or the path of a CLIP checkpoint.
        classnames: the target label set (``_`` becomes a space in prompts).
        class_agnostic: pretrain with random class tokens instead (one prompt for any
            class set); ``classnames`` must then be ``None``.
        num_classes: classes simulated by the class-agnostic variant (default 100).
        template: the hand-written prompt to stay aligned with; ``n_ctx`` is its
            token count. The class name always goes at the end.
        predefined_ctx: a soft prompt ``[n_ctx, D]`` (e.g. CoOp) to align with instead
            of the template's embeddings.
        init_ctx: an explicit start ``[n_ctx, D]`` (overrides ``config.init``).
        config: hyperparameters (:class:`FPPConfig`); keyword ``options`` override fields,
            e.g. ``steps=200, seed=1``.
        device: where to compute; defaults to the model's device (or CUDA if available
            when loading by name).
        progress: show a tqdm bar with the current losses.
        cache: reuse a prompt pretrained earlier with the same text tower, class names,
            template and config: ``True`` for the default cache folder, or a folder.

    Returns:
        The :class:`FPPPrompt` (ctx ``[n_ctx, D]`` fp32 on CPU, metadata, loss history).
    """
    cfg = (config or FPPConfig()).replace(**options) if options else (config or FPPConfig())
    if class_agnostic:
        if classnames is not None:
            raise ConfigError("pass either classnames or class_agnostic=True, not both")
        n = C.DEFAULT_AGNOSTIC_CLASSES if num_classes is None else num_classes
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"num_classes must be a positive int, got {num_classes!r}")
        names = None
    else:
        if classnames is None:
            raise ClassNameError("classnames is required (or pass class_agnostic=True)")
        if num_classes is not None:
            raise ConfigError("num_classes is only for class_agnostic=True; it follows from classnames")
        names = _validate_classnames(classnames)
        n = len(names)
    if predefined_ctx is None:
        template = _validate_template(template)

    clip_model, dev, backbone = _resolve_model(model, device)
    width = clip_model.positional_embedding.shape[-1]
    tower, given, n_ctx, lead, used_template = _text_setup(clip_model, template, predefined_ctx)
    if init_ctx is not None:
        init_ctx = _validate_ctx("init_ctx", init_ctx, width, n_ctx)
    prompts, predefined = _embed_class_prompts(clip_model, dev, names, n, n_ctx, lead, given)
    stats = None
    if names is None:
        weight = clip_model.token_embedding.weight.detach().float()
        stats = (float(weight.mean()), float(weight.std()))

    fingerprint = tower.fingerprint()
    meta = dict(
        backbone=backbone,
        template=used_template,
        classnames=names,
        class_agnostic=names is None,
        num_classes=n,
        fingerprint=fingerprint,
    )
    cache_dir = resolve_cache_dir(cache)
    key = None
    if cache_dir is not None:
        key = cache_key(fingerprint, names, n, used_template, predefined, init_ctx, cfg)
        hit = lookup(cache_dir, key, fingerprint=fingerprint, n_ctx=n_ctx, width=width)
        if hit is not None:
            logger.info("FPP cache hit %s", key)
            return hit

    with frozen([clip_model]):
        result = optimize_flat_prompt(
            tower,
            prompts,
            predefined,
            cfg,
            init_ctx=init_ctx,
            random_class_tokens=stats,
            device=dev,
            progress=progress,
        )
    prompt = prompt_from_result(result, cfg, **meta)
    if cache_dir is not None and key is not None:
        store(cache_dir, key, prompt)
    return prompt
