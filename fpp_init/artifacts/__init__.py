"""Prompt artifacts: the prompt object and its file format, exports, and Hub upload folders.

Public names: :class:`FPPPrompt`, :func:`save_fpp_prompt`, :func:`read_prompt_file` (with
:class:`PromptFile`, what it returns), :func:`export_coop`, :func:`build_hub_folder`,
:func:`default_filename`. The modules behind them (reading and validation, the cache, the Hub,
the model card) are internal.
"""

from __future__ import annotations

from .export import build_hub_folder, export_coop
from .files import PromptFile, read_prompt_file
from .fpp_prompt import FPPPrompt, save_fpp_prompt
from .hub import default_filename

__all__ = [
    "FPPPrompt",
    "save_fpp_prompt",
    "read_prompt_file",
    "PromptFile",
    "export_coop",
    "build_hub_folder",
    "default_filename",
]
