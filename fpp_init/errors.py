"""The one exception hierarchy of fpp-init.

Every error the package raises on bad input is an :class:`FPPError`. The
subclasses also derive from the matching built-in (``ValueError``,
``OSError``, ...) so existing ``except`` clauses keep working.
"""

from __future__ import annotations

__all__ = [
    "FPPError",
    "ConfigError",
    "ClassNameError",
    "TemplateError",
    "PromptShapeError",
    "ModelLoadError",
    "PromptFileError",
    "PromptFormatError",
    "PromptVersionError",
    "PickleFileError",
    "PromptMismatchError",
    "HubError",
    "AdapterError",
    "MetricInputError",
    "PlotDependencyError",
]


class FPPError(Exception):
    """Base class of every error raised by fpp-init."""


class ConfigError(FPPError, ValueError):
    """A hyperparameter or option has an invalid value."""


class ClassNameError(FPPError, ValueError):
    """Class names are empty, not strings, or too long for the context length."""


class TemplateError(FPPError, ValueError):
    """The prompt template cannot be used (empty, or the class is not at the end)."""


class PromptShapeError(FPPError, ValueError):
    """A context tensor has the wrong rank, width or dtype."""


class ModelLoadError(FPPError, RuntimeError):
    """A CLIP model could not be resolved, downloaded or read."""


class PromptFileError(FPPError, OSError):
    """A prompt file is missing, unreadable, truncated or not a safetensors file."""


class PromptFormatError(FPPError, ValueError):
    """A prompt file was read but its content is not a valid fpp-init prompt."""


class PromptVersionError(PromptFormatError):
    """A prompt file was written by a newer fpp-init format version."""


class PickleFileError(PromptFileError):
    """A pickle (``.pt``/``.pth``) file was given where a safetensors prompt was expected."""


class PromptMismatchError(FPPError, ValueError):
    """A prompt does not fit the model or expectation it is checked against."""


class HubError(FPPError, OSError):
    """A Hugging Face Hub reference could not be resolved or downloaded."""


class AdapterError(FPPError, TypeError):
    """A live model is not of a supported TPT-family design."""


class MetricInputError(FPPError, ValueError):
    """Probabilities / logits or labels given to :mod:`fpp_init.metrics` have a bad shape or value."""


class PlotDependencyError(FPPError, ImportError):
    """A plotting function was called but matplotlib is not installed (``pip install "fpp-init[plot]"``)."""
