"""fpp-init: flatness-aware prompt pretraining (FPP) for test-time prompt tuning.

The public API::

    pretrain_flat_prompt   pretrain context vectors for a CLIP model (the FPP algorithm)
    load_fpp_prompt        load a prompt file (local .safetensors or Hugging Face Hub)
    save_fpp_prompt        write a prompt file (also ``FPPPrompt.save``)
    FPPPrompt, FPPConfig   the prompt artifact and the hyperparameters
    fingerprint_model      text-tower fingerprint, to check a prompt against a model
    FPPError and subclasses
"""

from __future__ import annotations

import logging

from ._load import load_fpp_prompt
from ._pretrain import fingerprint_model, pretrain_flat_prompt
from ._version import __version__
from .config import FPPConfig
from .errors import (
    AdapterError,
    ClassNameError,
    ConfigError,
    FPPError,
    HubError,
    ModelLoadError,
    PickleFileError,
    PromptFileError,
    PromptFormatError,
    PromptMismatchError,
    PromptShapeError,
    PromptVersionError,
    TemplateError,
)
from .prompt import FPPPrompt, save_fpp_prompt

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "__version__",
    "pretrain_flat_prompt",
    "load_fpp_prompt",
    "save_fpp_prompt",
    "fingerprint_model",
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
]
