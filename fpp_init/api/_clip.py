"""``import_clip`` and ``load_clip``: OpenAI CLIP (clip-anytorch) in any environment fpp-init installs into."""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from torch import nn

from .. import constants as const
from .._validate import check_bool, check_device, default_device
from ..models.clip import clip_load
from ..models.clip import import_clip as _import_clip

__all__ = ["import_clip", "load_clip"]


def import_clip() -> ModuleType:
    """The ``clip`` module of clip-anytorch (``clip.load``, ``clip.tokenize``, ``clip.model.CLIP``...).

    Use it instead of ``import clip``: clip-anytorch runs ``from pkg_resources import packaging``,
    and ``pkg_resources`` is gone from setuptools >= 82 (which a fresh environment has: torch asks
    for setuptools >= 77), so a plain ``import clip`` fails there with ``ModuleNotFoundError: No
    module named 'pkg_resources'``. This import supplies a stand-in of ``pkg_resources`` exposing
    the real ``packaging`` library for the duration of the import only. After it, ``import clip``
    works anywhere in the process (the module is imported).

    Raises:
        ModelLoadError: clip-anytorch is not installed, or the ``clip`` found first is a copy
            vendored by a TPT-family repository (run from another folder, or pass your model object).
    """
    return _import_clip()


def load_clip(
    name_or_path: str | os.PathLike[str] = const.DEFAULT_ARCH,
    device: str | torch.device | None = None,
    *,
    jit: bool = False,
) -> tuple[nn.Module, Callable[[Any], torch.Tensor]]:
    """``clip.load`` of clip-anytorch, through :func:`import_clip`: ``(model, preprocess)``.

    Args:
        name_or_path: a clip-anytorch name (``"ViT-B/16"``, downloaded on first use: needs network)
            or the path of a CLIP checkpoint (OpenAI's ``.pt`` or a ``state_dict`` saved with
            ``torch.save``).
        device: where to put the model (default: CUDA if available, else the CPU).
        jit: load OpenAI's TorchScript model instead of the plain ``nn.Module`` (default ``False``,
            as TPT-family code does; fpp-init needs the plain module).

    Returns:
        The model (in eval mode; fp32 on the CPU, fp16 on CUDA, as ``clip.load`` gives it) and its
        image preprocessing transform. The caller's global RNG is left untouched.

    Raises:
        ModelLoadError: an unknown name, a missing or unreadable checkpoint, or a failed download
            (the message says to pass a local checkpoint path).
        ConfigError: a device that is not available here.
    """
    dev = check_device(device) if device is not None else default_device()
    model, preprocess = clip_load(name_or_path, dev, jit=check_bool(jit, "jit"))
    return model, preprocess
