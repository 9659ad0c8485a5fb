"""OpenAI CLIP through clip-anytorch (the pip ``clip`` package): loading, tokenizer, text tower.

Only the front doors come here; adapters never do, because TPT-family repositories ship their
own top-level ``clip`` package.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import first_line, os_reason
from .._runtime import global_rng_kept, load_tensors_only
from .._validate import check_model_reference
from ..errors import ModelLoadError
from ..towers import CausalTextTower, openai_spec
from ..towers._base import attr_as
from ._base import TextModel

logger = logging.getLogger(__name__)

__all__ = [
    "import_clip",
    "ClipTokenizer",
    "clip_load",
    "load_clip_text_model",
    "is_clip_model",
    "text_model_from_clip",
    "infer_backbone",
]

#: Attributes of a clip-anytorch ``CLIP`` that the text side uses.
CLIP_TEXT_ATTRS = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")

# (vision width, patch size, input resolution) -> name
_VIT_NAMES = {
    (768, 32, 224): "ViT-B/32",
    (768, 16, 224): "ViT-B/16",
    (1024, 14, 224): "ViT-L/14",
    (1024, 14, 336): "ViT-L/14@336px",
}
# (blocks per stage, stem width) -> name
_RN_NAMES: dict[tuple[tuple[int, ...], int], str] = {
    ((3, 4, 6, 3), 64): "RN50",
    ((3, 4, 23, 3), 64): "RN101",
    ((4, 6, 10, 6), 80): "RN50x4",
    ((6, 8, 18, 8), 96): "RN50x16",
    ((3, 15, 36, 10), 128): "RN50x64",
}


class _PkgResourcesShim(types.ModuleType):
    """The stand-in ``pkg_resources``: only what clip-anytorch imports from it."""

    packaging: types.ModuleType
    __fpp_init_shim__: bool


def _pkg_resources_shim() -> types.ModuleType:
    import packaging.version  # noqa: F401  (binds packaging.version)

    shim = _PkgResourcesShim("pkg_resources")
    shim.packaging = sys.modules["packaging"]
    shim.__fpp_init_shim__ = True
    return shim


def import_clip() -> types.ModuleType:
    """Import clip-anytorch, whatever setuptools the environment has.

    clip-anytorch 2.6.0 runs ``from pkg_resources import packaging`` only to compare version
    strings. ``pkg_resources`` is gone from setuptools >= 82 (and absent without setuptools).
    When it cannot be imported, a minimal stand-in that exposes the real ``packaging`` library
    is placed in ``sys.modules`` for the duration of the import only, then removed again, so
    no other code ever sees it.
    """
    if "clip.clip" in sys.modules:
        return importlib.import_module("clip")
    shim = saved = None
    had_entry = False
    if sys.modules.get("pkg_resources") is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importlib.import_module("pkg_resources")
        except ImportError:
            shim = _pkg_resources_shim()
            saved, had_entry = sys.modules.get("pkg_resources"), "pkg_resources" in sys.modules
            sys.modules["pkg_resources"] = shim
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            clip = importlib.import_module("clip")
        if not hasattr(clip, "tokenize") or not hasattr(clip, "load"):
            raise ModelLoadError(
                f"the module 'clip' imported from {getattr(clip, '__file__', '?')} is not "
                "clip-anytorch (a vendored copy from a TPT-family repo shadows it?); "
                "pass the CLIP model object itself instead of a name or path"
            )
        return clip
    except ImportError as exc:
        raise ModelLoadError(
            f"could not import clip-anytorch ({exc}); install it with "
            "'pip install clip-anytorch' or pass a CLIP model object"
        ) from None
    finally:
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            if had_entry:  # a None entry (an import blocked on purpose), which typeshed's sys.modules cannot hold
                sys.modules["pkg_resources"] = saved  # type: ignore[assignment]
            else:
                del sys.modules["pkg_resources"]


class ClipTokenizer:
    """clip-anytorch's BPE tokenizer (the one OpenAI CLIP was trained with)."""

    def __init__(self) -> None:
        import_clip()
        self._tok = importlib.import_module("clip.clip")._tokenizer
        self.sot_id = self._tok.encoder["<|startoftext|>"]
        self.eot_id = self._tok.encoder["<|endoftext|>"]
        self.pad_id = 0

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text))


def is_clip_model(model: object) -> bool:
    """An ``nn.Module`` with the text attributes of clip-anytorch's ``CLIP`` (also OpenAI's own ``clip``)."""
    return isinstance(model, nn.Module) and all(hasattr(model, a) for a in CLIP_TEXT_ATTRS)


def infer_backbone(visual: object) -> str | None:
    """The OpenAI CLIP name whose image-tower shapes ``visual`` has, or ``None``."""
    tower: Any = visual  # duck-typed: what it lacks raises AttributeError / TypeError / IndexError, caught below
    try:
        if hasattr(tower, "transformer"):  # VisionTransformer
            key = (tower.conv1.out_channels, tower.conv1.kernel_size[0], tower.input_resolution)
            return _VIT_NAMES.get(key)
        if hasattr(tower, "layer4"):  # ModifiedResNet
            blocks = tuple(len(getattr(tower, f"layer{i}")) for i in range(1, 5))
            return _RN_NAMES.get((blocks, tower.conv1.out_channels * 2))
    except (AttributeError, TypeError, IndexError):
        return None
    return None


def text_model_from_clip(model: nn.Module, backbone: str | None = None) -> TextModel:
    """The :class:`TextModel` of a clip-anytorch ``CLIP``; :class:`ModelLoadError` if its text tower
    is not an OpenAI-style causal transformer."""
    spec = openai_spec(
        attr_as(model, "transformer", nn.Module),
        attr_as(model, "positional_embedding", torch.Tensor),
        attr_as(model, "ln_final", nn.Module),
        attr_as(model, "text_projection", torch.Tensor),
    )
    if spec is None:
        raise ModelLoadError(
            f"the text transformer of {type(model).__name__} is not an OpenAI-CLIP-style causal transformer "
            "(attn / ln_1 / mlp / ln_2 blocks with a causal attn_mask)"
        )
    return TextModel(
        model=model,
        tower=CausalTextTower(spec),
        tokenizer=ClipTokenizer(),
        token_embedding=attr_as(model, "token_embedding.weight", torch.Tensor),
        library="clip",
        backbone=backbone or infer_backbone(getattr(model, "visual", None)),
    )


def _load_local(clip: Any, path: str, device: torch.device, jit: bool) -> tuple[Any, Any]:
    """A CLIP checkpoint file as ``clip.load(path, jit=jit)`` builds it, but never unpickling code:
    an OpenAI TorchScript archive (TorchScript's own loader), else a state dict read tensors-only
    (``clip.load`` uses plain ``torch.load``, which runs a pickle's code with torch < 2.6)."""
    try:
        archive = torch.jit.load(path, map_location="cpu").eval()
    except RuntimeError:  # not a TorchScript archive
        if jit:
            raise ModelLoadError(
                f"{path!r} is not an OpenAI CLIP TorchScript archive; jit=True loads only those (use jit=False)"
            ) from None
        try:
            state = load_tensors_only(path)
        except pickle.UnpicklingError:  # corrupt, or objects other than tensors (never run: pickles can run code)
            raise ModelLoadError(
                f"could not read CLIP checkpoint {path!r}: it is neither an OpenAI CLIP archive nor a state_dict "
                "of tensors (torch.load(weights_only=True) refused it; nothing in it was run)"
            ) from None
    else:
        if jit:  # clip.load's own TorchScript path (device patching), on a file known to be an archive
            model, preprocess = clip.load(path, device=str(device), jit=True)
            return model, preprocess
        state = archive.state_dict()
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path!r} holds a {type(state).__name__}, not a CLIP state_dict")
    model = clip.model.build_model(state).to(device)
    model = model.float() if device.type == "cpu" else model
    return model, clip.clip._transform(model.visual.input_resolution)


def clip_load(name_or_path: str | os.PathLike[str], device: torch.device, *, jit: bool = False) -> tuple[Any, Any]:
    """``clip.load(name_or_path, device, jit=jit)``: ``(model, preprocess)``, with the checks and messages of
    fpp-init (:class:`ModelLoadError` saying what to do, e.g. offline), the caller's global RNG kept, and a
    local file never unpickled with code (``torch.load(weights_only=True)``)."""
    clip = import_clip()
    known = list(clip.available_models())
    name = check_model_reference(name_or_path, known=known)
    local = name not in known
    if local and os.path.isdir(name):  # a transformers folder is not clip-anytorch's
        raise ModelLoadError(f"{name!r} is a folder; pass the checkpoint file inside it")
    with global_rng_kept(device):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit.load deprecation; torch's notes on refused files
                if local:
                    model, preprocess = _load_local(clip, name, device, jit)
                else:
                    model, preprocess = clip.load(name, device=str(device), jit=jit)
        except ModelLoadError:
            raise
        except (OSError, ConnectionError) as exc:  # urllib errors are OSErrors
            if name in known:
                raise ModelLoadError(
                    f"could not download CLIP {name!r} ({first_line(exc)}). Offline? Download the "
                    "checkpoint on a connected machine and pass its path (CLI: --weights PATH)"
                ) from None
            why = os_reason(exc) if exc.errno is not None else first_line(exc)
            raise ModelLoadError(f"could not read CLIP checkpoint {name!r}: {why}") from None
        except Exception as exc:
            raise ModelLoadError(
                f"could not read CLIP checkpoint {name!r} ({type(exc).__name__}: {first_line(exc)}); "
                "expected an OpenAI CLIP TorchScript archive or a state_dict saved with torch.save"
            ) from None
    logger.info("loaded CLIP %s on %s", name, device)
    return model, preprocess


def load_clip_text_model(name_or_path: str | os.PathLike[str], device: torch.device) -> TextModel:
    """The :class:`TextModel` of a CLIP model loaded by clip-anytorch name or checkpoint path (:func:`clip_load`)."""
    model, _ = clip_load(name_or_path, device)
    name = os.fspath(name_or_path)
    local = name not in import_clip().available_models()
    backbone = infer_backbone(getattr(model, "visual", None)) or (Path(name).name if local else name)
    return text_model_from_clip(model.eval(), backbone)
