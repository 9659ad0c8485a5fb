"""Prompt artifacts: the prompt object and file format, reading and validation, the cache, the Hub,
exports (CoOp checkpoint, Hub folder with model card).

Public names: :class:`FPPPrompt`, :func:`save_fpp_prompt`, :func:`export_coop`,
:func:`build_hub_folder`, :func:`default_filename`.
"""

from __future__ import annotations

from .export import build_hub_folder, collect_prompts, export_coop
from .files import PromptFile, read_prompt_file
from .fpp_prompt import FPPPrompt, prompt_bytes, save_fpp_prompt
from .hub import HubRef, default_filename, parse_hub_ref
from .sources import HubAccess, as_prompt, is_prompt_path, read_source, resolve_path

__all__ = [
    "FPPPrompt",
    "save_fpp_prompt",
    "prompt_bytes",
    "PromptFile",
    "read_prompt_file",
    "HubAccess",
    "resolve_path",
    "read_source",
    "as_prompt",
    "is_prompt_path",
    "HubRef",
    "parse_hub_ref",
    "default_filename",
    "export_coop",
    "collect_prompts",
    "build_hub_folder",
]
