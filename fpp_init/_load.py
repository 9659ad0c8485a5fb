"""Reading prompt files: local safetensors (validated); Hub references via :mod:`fpp_init.hub`."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from . import constants as C
from .errors import PickleFileError, PromptFileError, PromptFormatError, PromptVersionError
from .prompt import FPPPrompt

logger = logging.getLogger(__name__)

_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".tar")


def _looks_like_pickle(head: bytes) -> bool:
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def load_local(path: str | os.PathLike[str], *, allow_pickle: bool = False) -> FPPPrompt:
    """Read and validate a prompt file; nothing is returned unless everything checks out."""
    path = Path(path)
    if not path.exists():
        raise PromptFileError(f"prompt file not found: {str(path)!r}")
    if path.is_dir():
        raise PromptFileError(f"{str(path)!r} is a directory; pass the .safetensors file inside it")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PromptFileError(f"cannot read prompt file {str(path)!r}: {exc}") from exc
    if path.suffix.lower() in _PICKLE_SUFFIXES or _looks_like_pickle(data[:8]):
        if not allow_pickle:
            raise PickleFileError(
                f"{str(path)!r} is a pickle (torch.save) file, not safetensors; pickles can run code, so "
                "fpp-init refuses them by default. If you trust it, pass allow_pickle=True (it is then read "
                "with torch.load(weights_only=True)), or convert it: fpp-init export FILE --out x.safetensors"
            )
        return _load_pickle(path)
    return _parse_safetensors(data, str(path))


def _load_pickle(path: Path) -> FPPPrompt:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PickleFileError(f"could not read {str(path)!r} with torch.load(weights_only=True): {exc}") from exc
    ctx = obj
    if isinstance(ctx, dict) and "state_dict" in ctx:
        ctx = ctx["state_dict"]
    if isinstance(ctx, dict):
        ctx = ctx.get(C.CTX_KEY)
    if not isinstance(ctx, torch.Tensor):
        raise PromptFormatError(
            f"{str(path)!r} holds no 'ctx' tensor (expected a tensor, {{'ctx': tensor}} or the CoOp "
            "layout {'state_dict': {'ctx': tensor}})"
        )
    _check_tensor(ctx, str(path))
    return FPPPrompt(ctx=ctx.detach().float().cpu(), template=None)


def _check_tensor(ctx: torch.Tensor, where: str) -> None:
    if ctx.dim() != 2:
        raise PromptFormatError(f"'ctx' in {where} must be 2-D [n_ctx, D], got shape {tuple(ctx.shape)}")
    if not ctx.is_floating_point():
        raise PromptFormatError(f"'ctx' in {where} must be a float tensor, got {ctx.dtype}")
    if ctx.shape[0] == 0 or ctx.shape[1] == 0:
        raise PromptFormatError(f"'ctx' in {where} is empty: shape {tuple(ctx.shape)}")
    if not bool(torch.isfinite(ctx).all()):
        raise PromptFormatError(f"'ctx' in {where} contains NaN or Inf values; the prompt is unusable")


def _parse_safetensors(data: bytes, where: str) -> FPPPrompt:
    from safetensors.torch import load as st_load

    if len(data) < 8:
        raise PromptFileError(f"{where} is truncated or empty ({len(data)} bytes); download or write it again")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8 or header_len > 100_000_000:
        raise PromptFileError(f"{where} is truncated or not a safetensors file; download or write it again")
    try:
        header = json.loads(data[8 : 8 + header_len].decode("utf-8"))
        tensors = st_load(data)
    except Exception as exc:
        raise PromptFileError(
            f"{where} is corrupt or truncated ({type(exc).__name__}: {exc}); download or write it again"
        ) from exc
    if C.CTX_KEY not in tensors:
        raise PromptFormatError(f"{where} has no 'ctx' tensor (keys: {sorted(tensors)}); not an fpp-init prompt")
    ctx = tensors[C.CTX_KEY]
    _check_tensor(ctx, where)
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("fpp_format") != C.FORMAT_NAME:
        raise PromptFormatError(
            f"{where} has no fpp-init metadata; it is not an fpp-init prompt file. To use a raw "
            "[n_ctx, D] tensor, wrap it: fpp_init.FPPPrompt(ctx=tensor, template=None)"
        )
    try:
        version = int(meta.get("fpp_format_version", ""))
    except ValueError as exc:
        raise PromptFormatError(f"{where}: malformed fpp_format_version {meta.get('fpp_format_version')!r}") from exc
    if version > C.FORMAT_VERSION:
        raise PromptVersionError(
            f"{where} uses prompt format version {version}, newer than this fpp-init understands "
            f"({C.FORMAT_VERSION}); upgrade: pip install -U fpp-init"
        )
    return FPPPrompt.from_metadata(ctx.float(), meta)


def load_fpp_prompt(
    source: str | os.PathLike[str] | FPPPrompt,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    allow_pickle: bool = False,
) -> FPPPrompt:
    """Load a prompt from a local ``.safetensors`` file (validated)."""
    prompt = source if isinstance(source, FPPPrompt) else load_local(source, allow_pickle=allow_pickle)
    if device is not None or dtype is not None:
        prompt = prompt.to(device=device, dtype=dtype)
    return prompt
