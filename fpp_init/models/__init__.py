"""Model references -> :class:`TextModel`: one front door for every CLIP library.

A model is given as an object (clip-anytorch ``CLIP``; OpenCLIP ``CLIP`` / ``CustomTextCLIP``;
transformers ``CLIPModel`` / ``CLIPTextModelWithProjection`` / ``CLIPTextModel``) or by reference, the library chosen
by the prefix (as open_clip does for its hub names):

* ``"ViT-B/16"`` or a checkpoint path: clip-anytorch (``clip.load``);
* ``"open_clip:ARCH/PRETRAINED"`` or ``"open_clip:hf-hub:ORG/REPO"``: OpenCLIP;
* ``"hf:ORG/REPO"`` or a local folder holding a transformers ``config.json``: transformers.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .. import constants as const
from .._validate import check_device, check_model_reference, default_device, is_model_folder
from ..errors import ConfigError, ModelLoadError
from ._base import TextModel, Tokenizer
from .class_prompts import ClassPrompts, build_class_prompts
from .clip import is_clip_model, load_clip_text_model, text_model_from_clip
from .hf import load_hf, text_model_from_hf
from .open_clip import load_open_clip, text_model_from_open_clip

__all__ = ["TextModel", "Tokenizer", "ClassPrompts", "text_model", "build_class_prompts"]


def _library(model: object) -> str:
    return type(model).__module__.split(".", 1)[0]


def _from_object(model: Any) -> TextModel:
    lib = _library(model)
    if lib == "open_clip":
        return text_model_from_open_clip(model)
    if lib == "transformers":
        return text_model_from_hf(model)
    if is_clip_model(model):
        return text_model_from_clip(model)
    hint = (
        " It looks like a TPT-family model: use fpp_init.apply(model) instead."
        if hasattr(getattr(model, "module", model), "prompt_learner")
        else ""
    )
    raise ModelLoadError(
        "expected a CLIP model (clip-anytorch, OpenCLIP or transformers), a model name or a checkpoint path; "
        f"got {type(model).__name__}.{hint}"
    )


def _from_reference(ref: str, device: torch.device) -> TextModel:
    if ref.startswith((const.OPEN_CLIP_PREFIX, const.HF_PREFIX)):
        check_model_reference(ref)  # (clip-anytorch names are checked by clip_load, against clip's own list)
    if ref.startswith(const.OPEN_CLIP_PREFIX):
        return load_open_clip(ref[len(const.OPEN_CLIP_PREFIX) :], device)
    if ref.startswith(const.HF_PREFIX) or is_model_folder(ref):  # (another folder: load_clip says "a folder")
        return load_hf(ref[len(const.HF_PREFIX) :] if ref.startswith(const.HF_PREFIX) else ref, device)
    return load_clip_text_model(ref, device)


def text_model(model: Any, *, device: Any = None) -> TextModel:
    """The :class:`TextModel` of ``model`` (an object or a reference, see the module docstring).

    ``device``: where to load a referenced model (default: CUDA if available); for an object it
    must be where the object already is (``None``: wherever that is).
    """
    if isinstance(model, TextModel):
        found = model
    elif isinstance(model, (str, os.PathLike)):
        ref = os.fspath(model)
        if not ref.strip():
            raise ConfigError("model must not be an empty string", param="model")
        return _from_reference(ref, check_device(device) if device is not None else default_device())
    elif isinstance(model, nn.Module):
        found = _from_object(model)
    else:
        raise ModelLoadError(
            "model must be a CLIP model object, a model name (e.g. 'ViT-B/16') or a checkpoint path; "
            f"got {type(model).__name__}"
        )
    if device is not None:
        want, have = check_device(device), found.device
        if want.type != have.type or (want.index is not None and want.index != have.index):
            raise ConfigError(
                f"device={str(want)!r} but the model is on {have}; move the model first or omit device", param="device"
            )
    return found
