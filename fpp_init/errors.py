"""The one exception hierarchy of fpp-init, and its warning categories.

Every error the package raises on bad input, a bad file or a failed run is an
:class:`FPPError`. The subclasses also derive from the matching built-in
(``ValueError``, ``OSError``, ...) so existing ``except`` clauses keep working.
The same mistake raises the same class everywhere:

* a wrong type or value of an argument or option: :class:`ConfigError` (class
  names: :class:`ClassNameError`; the template: :class:`TemplateError`);
* a context tensor that is not a finite, non-empty, floating ``[n_ctx, D]``
  tensor, wherever it comes from (argument, file, prompt object):
  :class:`PromptShapeError`;
* a valid prompt that does not fit a model or an expectation: :class:`PromptMismatchError`;
* a file that cannot be read or is not a prompt file: :class:`PromptFileError` and
  its subclasses; an output that cannot be written: :class:`OutputError`.

Conditions the user should act on but that do not stop the work are warnings
(:func:`warnings.warn`) of a :class:`FPPWarning` subclass, so they can be
filtered by category; progress and information go to :mod:`logging`.

This module imports nothing heavy (no torch): the CLI's ``--help`` uses it.
"""

from __future__ import annotations

__all__ = [
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


class FPPError(Exception):
    """Base class of every error raised by fpp-init."""


class ConfigError(FPPError, ValueError):
    """An argument or option has the wrong type or an invalid value.

    ``param`` names the argument (``"steps"``); the CLI shows its flag (``--steps``) instead.
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class ClassNameError(FPPError, ValueError):
    """Class names are missing, empty, not strings, or too long for the context length."""


class TemplateError(FPPError, ValueError):
    """The prompt template cannot be used (empty, no tokens, or the class is not at the end)."""


class PromptShapeError(FPPError, ValueError):
    """A context tensor is not a finite, non-empty, floating-point ``[n_ctx, D]`` tensor."""


class ModelLoadError(FPPError, RuntimeError):
    """A CLIP model could not be resolved, downloaded or read, or is not a supported text tower."""


class MissingDependencyError(FPPError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class PlotDependencyError(MissingDependencyError):
    """A plotting function was called but matplotlib is not installed."""


class PromptFileError(FPPError, OSError):
    """A prompt file is missing, unreadable, not a regular file, truncated or not a safetensors file."""


class PromptFormatError(FPPError, ValueError):
    """A prompt file was read but its content is not a valid fpp-init prompt (keys, metadata)."""


class PromptVersionError(PromptFormatError):
    """A prompt file was written by a newer fpp-init format version."""


class PickleFileError(PromptFileError):
    """A pickle (``.pt``/``.pth``) file was given where a safetensors prompt was expected."""


class PromptMismatchError(FPPError, ValueError):
    """A prompt does not fit the model or expectation it is checked against."""


class OutputError(FPPError, OSError):
    """An output file or folder cannot be written (read-only, a directory, name too long, disk full)."""


class HubError(FPPError, OSError):
    """A Hugging Face Hub reference could not be resolved, downloaded or uploaded."""


class AdapterError(FPPError, TypeError):
    """A live model is not of a supported TPT-family design."""


class MetricInputError(FPPError, ValueError):
    """Probabilities / logits, labels or options given to :mod:`fpp_init.metrics` are invalid."""


class NonFiniteError(FPPError, ArithmeticError):
    """A computation produced NaN or Inf (diverged optimisation, or non-finite model weights)."""


class CheckpointError(FPPError, ValueError):
    """A pretraining checkpoint is unreadable or belongs to other inputs."""


class DistributedError(FPPError, RuntimeError):
    """Distributed ranks disagree on their inputs, or the process group cannot be used."""


# -- warnings ---------------------------------------------------------------------------------
class FPPWarning(UserWarning):
    """Base class of fpp-init's warnings (``warnings.filterwarnings("ignore", category=FPPWarning)``)."""


class PromptMismatchWarning(FPPWarning):
    """A prompt is used with other class names or another text tower than it was pretrained for."""


class ContextLengthWarning(FPPWarning):
    """A template gives a context length other than the TPT default (4 tokens)."""


class ClassNameWarning(FPPWarning):
    """Class names the model cannot tell apart: they differ only in case, spaces or underscores (CLIP's
    tokenizer gives them the same prompt), or a live model's class set names a class twice."""


class LongRunWarning(FPPWarning):
    """A run was asked for far more steps than the paper's 1000; the message estimates how long it takes."""


class BeyondPaperWarning(FPPWarning):
    """FPP is used where the paper did not evaluate it (e.g. MaPLe's image branch)."""


class CacheWarning(FPPWarning):
    """The prompt cache cannot be used (unreadable / unwritable folder, damaged entry); work goes on without it."""


class FastPathWarning(FPPWarning):
    """The fast exact text tower could not be used for a model; a slower general path runs instead."""
