"""Reading prompt files: safetensors (validated) or, when trusted, CoOp-style pickles.

Only regular files are read, never more than :data:`~fpp_init.constants.MAX_PROMPT_FILE_BYTES`;
the content decides the format, not the file name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load

from .. import constants as const
from .._io import NESTED_TOO_DEEPLY, read_regular_file
from .._runtime import load_tensors_only
from .._validate import check_ctx
from ..errors import PickleFileError, PromptFileError, PromptFormatError, PromptVersionError
from .fpp_prompt import FPPPrompt

__all__ = ["PromptFile", "read_prompt_file", "looks_like_pickle"]


@dataclass
class PromptFile:
    """A prompt as read from a file, with what the file itself says.

    Attributes:
        prompt: the validated prompt (``ctx`` as fp32 CPU).
        path: the file.
        size: its size in bytes.
        stored_dtype: the dtype of ``ctx`` in the file (``"float32"``...), or ``"pickle"``.
        metadata: the raw string metadata of a safetensors file (empty for a pickle).
    """

    prompt: FPPPrompt
    path: Path
    size: int
    stored_dtype: str
    metadata: dict[str, str]


def _looks_like_safetensors(data: bytes) -> bool:
    """8-byte little-endian header length, then a JSON object."""
    if len(data) < 9:
        return False
    n = int.from_bytes(data[:8], "little")
    return 2 <= n <= min(len(data) - 8, const.MAX_HEADER_BYTES) and data[8:9] == b"{"


def looks_like_pickle(data: bytes, name: str = "") -> bool:
    """A ``torch.save`` zip archive, a raw pickle stream (protocol >= 2 starts with 0x80), or a pickle suffix."""
    return data.startswith(b"PK\x03\x04") or data[:1] == b"\x80" or Path(name).suffix.lower() in const.PICKLE_SUFFIXES


def _header(data: bytes, where: str) -> dict[str, Any]:
    if len(data) < 8:
        raise PromptFileError(f"{where} is truncated or empty ({len(data)} bytes); download or write it again")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8 or n > const.MAX_HEADER_BYTES:
        raise PromptFileError(f"{where} is truncated or not a safetensors file; download or write it again")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PromptFileError(f"{where} is corrupt or not a safetensors file (bad header: {exc})") from None
    except RecursionError:
        raise PromptFileError(f"{where}: its header {NESTED_TOO_DEEPLY}") from None
    if not isinstance(header, dict):
        raise PromptFileError(f"{where} is corrupt or not a safetensors file (the header is not a JSON object)")
    return header


def _format_version(meta: dict[str, Any], where: str) -> None:
    raw: Any = meta.get("fpp_format_version")
    try:
        version = int(raw)
    except (TypeError, ValueError):
        raise PromptFormatError(
            f"{where}: missing or malformed fpp_format_version {raw!r}; the metadata was edited or "
            "written by another tool: re-export the prompt with fpp-init"
        ) from None
    if version < 1:
        raise PromptFormatError(f"{where}: invalid fpp_format_version {version}; re-export the prompt with fpp-init")
    if version > const.FORMAT_VERSION:
        raise PromptVersionError(
            f"{where} uses prompt format version {version}, newer than this fpp-init understands "
            f"({const.FORMAT_VERSION}); upgrade fpp-init"
        )


def _parse_safetensors(data: bytes, where: str) -> tuple[FPPPrompt, str, dict[str, str]]:
    header = _header(data, where)
    try:
        tensors = st_load(data)
    except Exception as exc:
        raise PromptFileError(
            f"{where} is corrupt or truncated ({type(exc).__name__}); download or write it again"
        ) from None
    if const.CTX_KEY not in tensors:
        raise PromptFormatError(f"{where} has no 'ctx' tensor (keys: {sorted(tensors)}); not an fpp-init prompt")
    ctx = check_ctx(tensors[const.CTX_KEY], f"'ctx' in {where}")
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or meta.get("fpp_format") != const.FORMAT_NAME:
        raise PromptFormatError(
            f"{where} has no fpp-init metadata; it is not an fpp-init prompt file. To use a raw "
            "[n_ctx, D] tensor, wrap it: fpp_init.FPPPrompt(ctx=tensor, template=None)"
        )
    _format_version(meta, where)
    prompt = FPPPrompt.from_metadata(ctx.float(), meta, where=where)
    return prompt, str(ctx.dtype).removeprefix("torch."), {str(k): str(v) for k, v in meta.items()}


def _parse_pickle(data: bytes, where: str) -> FPPPrompt:
    try:
        obj = load_tensors_only(data)
    except Exception as exc:
        raise PickleFileError(
            f"could not read {where} with torch.load(weights_only=True) ({type(exc).__name__}); "
            "it is corrupt, truncated or holds objects other than tensors and plain containers"
        ) from None
    ctx = obj
    if isinstance(ctx, dict) and "state_dict" in ctx:
        ctx = ctx["state_dict"]
    if isinstance(ctx, dict):
        ctx = ctx.get(const.CTX_KEY)
    if not isinstance(ctx, torch.Tensor):
        raise PromptFormatError(
            f"{where} holds no 'ctx' tensor (expected a tensor, {{'ctx': tensor}} or the CoOp "
            "layout {'state_dict': {'ctx': tensor}})"
        )
    return FPPPrompt(ctx=check_ctx(ctx, f"'ctx' in {where}").float().cpu().clone(), template=None)


def read_prompt_file(path: str | os.PathLike[str], *, allow_pickle: bool = False) -> PromptFile:
    """Read and validate a prompt file; nothing is returned unless everything checks out.

    A pickle (``torch.save``) file is refused unless ``allow_pickle=True``, and then read with
    ``torch.load(weights_only=True)`` (a tensor, ``{'ctx': t}`` or CoOp's ``{'state_dict': {'ctx': t}}``).
    """
    p = Path(path)
    where = repr(os.fspath(path))
    data = read_regular_file(p, limit=const.MAX_PROMPT_FILE_BYTES, what="prompt file")
    if _looks_like_safetensors(data):
        prompt, dtype, meta = _parse_safetensors(data, where)
        return PromptFile(prompt, p, len(data), dtype, meta)
    if looks_like_pickle(data, p.name):
        if not allow_pickle:
            raise PickleFileError(
                f"{where} is a pickle (torch.save) file, not safetensors; pickles can run code, so fpp-init "
                "refuses them by default. If you trust it, pass allow_pickle=True (CLI: --allow-pickle; it is "
                "then read with torch.load(weights_only=True)), or convert it once: "
                "fpp-init export FILE --allow-pickle --out prompt.safetensors"
            )
        return PromptFile(_parse_pickle(data, where), p, len(data), "pickle", {})
    prompt, dtype, meta = _parse_safetensors(data, where)  # reports truncation / corruption precisely
    return PromptFile(prompt, p, len(data), dtype, meta)
