"""fpp-init: flatness-aware prompt pretraining (FPP) for test-time prompt tuning.

The public API::

    pretrain_flat_prompt   pretrain context vectors for a CLIP model (the FPP algorithm)
    load_fpp_prompt        load a prompt file (local .safetensors or Hugging Face Hub)
    push_fpp_prompt        upload prompt files plus a model card to the Hub
    save_fpp_prompt        write a prompt file (also ``FPPPrompt.save``)
    FPPPrompt, FPPConfig   the prompt artifact and the hyperparameters
    fingerprint_model      text-tower fingerprint, to check a prompt against a model
    sharpness              data-free flatness of a prompt (cosine drop under noise, landscape)
    metrics                calibration metrics (ECE, MCE, AECE, SCE, AURC, accuracy)
    apply, FPPHandle       one-line FPP initialisation of a live TPT-family model (undoable)
    FPPError and subclasses
"""

from __future__ import annotations

import logging

from . import metrics
from ._load import load_fpp_prompt
from ._pretrain import fingerprint_model, pretrain_flat_prompt
from ._sharpness import SharpnessResult, sharpness
from ._version import __version__
from .adapters import FPPHandle, apply
from .config import FPPConfig
from .errors import (
    AdapterError,
    ClassNameError,
    ConfigError,
    FPPError,
    HubError,
    MetricInputError,
    ModelLoadError,
    PickleFileError,
    PlotDependencyError,
    PromptFileError,
    PromptFormatError,
    PromptMismatchError,
    PromptShapeError,
    PromptVersionError,
    TemplateError,
)
from .hub import push_fpp_prompt
from .prompt import FPPPrompt, save_fpp_prompt

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "__version__",
    "pretrain_flat_prompt",
    "load_fpp_prompt",
    "save_fpp_prompt",
    "push_fpp_prompt",
    "fingerprint_model",
    "sharpness",
    "SharpnessResult",
    "metrics",
    "apply",
    "FPPHandle",
    "FPPPrompt",
    "FPPConfig",
    "FPPError",
    "ConfigError",
    "ClassNameError",
    "TemplateError",
    "PromptShapeError",
    "ModelLoadError",
    "PromptFileError",
    "PickleFileError",
    "PromptFormatError",
    "PromptVersionError",
    "PromptMismatchError",
    "HubError",
    "AdapterError",
    "MetricInputError",
    "PlotDependencyError",
]
