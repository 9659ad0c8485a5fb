"""Everything that touches the pip ``clip`` package (clip-anytorch).

Only the front door (:func:`fpp_init.pretrain_flat_prompt` with a model name
or path, and the CLI) comes here; adapters never do, because TPT-family
repositories ship their own top-level ``clip`` package.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import types
import warnings
from typing import Any

import torch

from .errors import ModelLoadError

logger = logging.getLogger(__name__)

__all__ = ["import_clip", "load_clip_model", "tokenizer"]


def _pkg_resources_shim() -> types.ModuleType:
    import packaging.version  # noqa: F401  (binds packaging.version)

    shim = types.ModuleType("pkg_resources")
    shim.packaging = sys.modules["packaging"]  # type: ignore[attr-defined]
    shim.__fpp_init_shim__ = True  # type: ignore[attr-defined]
    return shim


def import_clip() -> Any:
    """Import clip-anytorch, whatever setuptools the environment has.

    clip-anytorch 2.6.0 runs ``from pkg_resources import packaging`` only to
    compare version strings. ``pkg_resources`` is gone from setuptools >= 82
    (and absent without setuptools). When it cannot be imported, a minimal
    stand-in that exposes the real ``packaging`` library is placed in
    ``sys.modules`` for the duration of the import only, then removed again,
    so no other code ever sees it.
    """
    if "clip.clip" in sys.modules:
        return importlib.import_module("clip")
    shim = None
    if "pkg_resources" not in sys.modules or sys.modules["pkg_resources"] is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importlib.import_module("pkg_resources")
        except ImportError:
            shim = _pkg_resources_shim()
            saved = sys.modules.get("pkg_resources", None)
            had_entry = "pkg_resources" in sys.modules
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
        ) from exc
    finally:
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            if had_entry:
                sys.modules["pkg_resources"] = saved  # type: ignore[assignment]
            else:
                del sys.modules["pkg_resources"]


def tokenizer() -> Any:
    """The BPE tokenizer instance of clip-anytorch."""
    import_clip()
    return importlib.import_module("clip.clip")._tokenizer


def load_clip_model(name_or_path: str | os.PathLike[str], device: str | torch.device) -> torch.nn.Module:
    """Load a CLIP model by clip-anytorch name or checkpoint path.

    The caller's global RNG state is preserved (building the modules draws
    from it). Failures become :class:`ModelLoadError` with what to do.
    """
    clip = import_clip()
    name = os.fspath(name_or_path)
    known = list(clip.available_models())
    if name not in known and not os.path.exists(name):
        if name.endswith((".pt", ".pth", ".bin", ".ckpt")) or name.startswith((".", "/", "~")):
            raise ModelLoadError(f"CLIP checkpoint not found: {name!r}; check the path")
        raise ModelLoadError(f"unknown CLIP model {name!r}; use one of {known} or the path of a checkpoint file")
    if os.path.isdir(name):
        raise ModelLoadError(f"{name!r} is a directory; pass the checkpoint file inside it")
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load deprecation
                model, _ = clip.load(name, device=str(device), jit=False)
        except (OSError, ConnectionError) as exc:  # urllib errors are OSErrors
            if name in known:
                raise ModelLoadError(
                    f"could not download CLIP {name!r} ({exc}). Offline? Download the "
                    "checkpoint on a connected machine and pass its path (CLI: --weights PATH)"
                ) from exc
            raise ModelLoadError(f"could not read CLIP checkpoint {name!r}: {exc}") from exc
        except Exception as exc:
            raise ModelLoadError(
                f"could not read CLIP checkpoint {name!r} ({type(exc).__name__}: {exc}); "
                "expected an OpenAI CLIP TorchScript archive or a state_dict saved with torch.save"
            ) from exc
    logger.info("loaded CLIP %s on %s", name, device)
    return model
