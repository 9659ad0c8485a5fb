"""fpp-init: flatness-aware prompt pretraining (FPP) for test-time prompt tuning.

The public API (each name documented in the docs' API reference)::

    pretrain_flat_prompt   pretrain context vectors for a CLIP model (the FPP algorithm)
    FPPPrompt, FPPConfig   the prompt artifact and the hyperparameters
    load_fpp_prompt        load a prompt file (local .safetensors or Hugging Face Hub)
    save_fpp_prompt        write a prompt file (also ``FPPPrompt.save``)
    export_coop            write a CoOp-format checkpoint for TPT-family ``--load``
    push_fpp_prompt        upload prompt files plus a model card to the Hub
    build_zoo              many prompts (backbones x class sets x seeds) from one spec
    apply, FPPHandle       one-line FPP initialisation of a live TPT-family model (undoable)
    fingerprint_model      text-tower fingerprint, to check a prompt against a model
    sharpness              data-free flatness of a prompt; SharpnessConfig, SharpnessResult
    metrics                calibration metrics (ECE, MCE, AECE, SCE, AURC, accuracy)
    import_clip, load_clip clip-anytorch in any environment (no pkg_resources needed)
    FPPError, FPPWarning   the roots of every error and warning; the subclasses are in fpp_init.errors

Extension points: :mod:`fpp_init.adapters` (prompt-learner designs), :mod:`fpp_init.models` and
:mod:`fpp_init.towers` (CLIP libraries), :mod:`fpp_init.artifacts` (files and the Hub).

``import fpp_init`` is light: torch and the rest load on first use of a name that needs them.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from . import errors
from ._version import __version__
from .config import FPPConfig, SharpnessConfig
from .errors import FPPError, FPPWarning

if TYPE_CHECKING:  # pragma: no cover
    from . import metrics
    from .algorithm import SharpnessResult
    from .api import (
        FPPHandle,
        apply,
        build_zoo,
        fingerprint_model,
        import_clip,
        load_clip,
        load_fpp_prompt,
        pretrain_flat_prompt,
        push_fpp_prompt,
        sharpness,
    )
    from .artifacts import FPPPrompt, export_coop, save_fpp_prompt

logging.getLogger(__name__).addHandler(logging.NullHandler())

#: public name -> module that defines it (imported on first access)
_LAZY = {
    "pretrain_flat_prompt": ".api",
    "load_fpp_prompt": ".api",
    "push_fpp_prompt": ".api",
    "fingerprint_model": ".api",
    "sharpness": ".api",
    "apply": ".api",
    "FPPHandle": ".api",
    "build_zoo": ".api",
    "import_clip": ".api",
    "load_clip": ".api",
    "FPPPrompt": ".artifacts",
    "save_fpp_prompt": ".artifacts",
    "export_coop": ".artifacts",
    "SharpnessResult": ".algorithm",
    "metrics": ".metrics",
}

__all__ = [
    "__version__",
    "pretrain_flat_prompt",
    "FPPPrompt",
    "FPPConfig",
    "load_fpp_prompt",
    "save_fpp_prompt",
    "export_coop",
    "push_fpp_prompt",
    "build_zoo",
    "apply",
    "FPPHandle",
    "fingerprint_model",
    "sharpness",
    "SharpnessConfig",
    "SharpnessResult",
    "metrics",
    "import_clip",
    "load_clip",
    "errors",
    "FPPError",
    "FPPWarning",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fpp_init' has no attribute {name!r}")
    mod = importlib.import_module(module, __name__)
    value = mod if name == "metrics" else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
