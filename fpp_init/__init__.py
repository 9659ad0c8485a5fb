"""fpp-init: flatness-aware prompt pretraining (FPP) for test-time prompt tuning.

The public API::

    pretrain_flat_prompt   pretrain context vectors for a CLIP model (the FPP algorithm)
    load_fpp_prompt        load a prompt file (local .safetensors or Hugging Face Hub)
    save_fpp_prompt        write a prompt file (also ``FPPPrompt.save``)
    push_fpp_prompt        upload prompt files plus a model card to the Hub
    export_coop            write a CoOp-format checkpoint for TPT-family ``--load``
    FPPPrompt, FPPConfig   the prompt artifact and the hyperparameters
    fingerprint_model      text-tower fingerprint, to check a prompt against a model
    sharpness              data-free flatness of a prompt (loss increase under noise, landscape slices)
    SharpnessConfig, SharpnessResult
    metrics                calibration metrics (ECE, MCE, AECE, SCE, AURC, accuracy)
    apply, FPPHandle       one-line FPP initialisation of a live TPT-family model (undoable)
    import_clip, load_clip clip-anytorch's module / clip.load, also where ``import clip`` fails
                           (setuptools >= 82 has no pkg_resources)
    FPPError and subclasses; FPPWarning and subclasses

Layers, each importing only from those below it::

    cli -> api (the front doors) -> artifacts | adapters | backbones -> algorithm -> towers
        -> config, errors, constants, _validate, _io, _runtime

``import fpp_init`` is light: torch and the rest load on first use of a name that needs them.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .config import FPPConfig, SharpnessConfig
from .errors import (
    AdapterError,
    BeyondPaperWarning,
    CacheWarning,
    CheckpointError,
    ClassNameError,
    ClassNameWarning,
    ConfigError,
    ContextLengthWarning,
    DistributedError,
    FastPathWarning,
    FPPError,
    FPPWarning,
    HubError,
    LongRunWarning,
    MetricInputError,
    MissingDependencyError,
    ModelLoadError,
    NonFiniteError,
    OutputError,
    PickleFileError,
    PlotDependencyError,
    PromptFileError,
    PromptFormatError,
    PromptMismatchError,
    PromptMismatchWarning,
    PromptShapeError,
    PromptVersionError,
    TemplateError,
)

if TYPE_CHECKING:  # pragma: no cover
    from . import metrics
    from .algorithm import SharpnessResult
    from .api import (
        FPPHandle,
        apply,
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
    "import_clip": ".api",
    "load_clip": ".api",
    "FPPHandle": ".api",
    "FPPPrompt": ".artifacts",
    "save_fpp_prompt": ".artifacts",
    "export_coop": ".artifacts",
    "SharpnessResult": ".algorithm",
    "metrics": ".metrics",
}

__all__ = [
    "__version__",
    "pretrain_flat_prompt",
    "load_fpp_prompt",
    "save_fpp_prompt",
    "push_fpp_prompt",
    "export_coop",
    "fingerprint_model",
    "sharpness",
    "SharpnessResult",
    "SharpnessConfig",
    "metrics",
    "apply",
    "FPPHandle",
    "import_clip",
    "load_clip",
    "FPPPrompt",
    "FPPConfig",
    "FPPError",
    "ConfigError",
    "ClassNameError",
    "TemplateError",
    "PromptShapeError",
    "ModelLoadError",
    "MissingDependencyError",
    "PlotDependencyError",
    "PromptFileError",
    "PickleFileError",
    "PromptFormatError",
    "PromptVersionError",
    "PromptMismatchError",
    "OutputError",
    "HubError",
    "AdapterError",
    "MetricInputError",
    "NonFiniteError",
    "CheckpointError",
    "DistributedError",
    "FPPWarning",
    "PromptMismatchWarning",
    "ContextLengthWarning",
    "ClassNameWarning",
    "LongRunWarning",
    "BeyondPaperWarning",
    "CacheWarning",
    "FastPathWarning",
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
