"""Reading prompt files: local safetensors (validated), Hub references via :mod:`fpp_init.hub`."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import constants as C
from .errors import (
    ConfigError,
    HubError,
    PickleFileError,
    PromptFileError,
    PromptFormatError,
    PromptMismatchError,
    PromptVersionError,
)
from .prompt import FPPPrompt

logger = logging.getLogger(__name__)

_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".tar")
_MAX_HEADER = 100_000_000


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """8-byte little-endian header length, then a JSON object."""
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= min(size - 8, _MAX_HEADER) and head[8:9] == b"{"


def _looks_like_pickle(head: bytes) -> bool:
    # torch.save zip archive, or a raw pickle stream (protocol >= 2 starts with PROTO 0x80)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def load_local(path: str | os.PathLike[str], *, allow_pickle: bool = False) -> FPPPrompt:
    """Read and validate a prompt file; nothing is returned unless everything checks out.

    The content decides the format (not the suffix): safetensors is parsed; a pickle
    (``torch.save``) file is refused unless ``allow_pickle=True``, and then read with
    ``torch.load(weights_only=True)`` (a tensor, ``{'ctx': t}`` or CoOp's
    ``{'state_dict': {'ctx': t}}``).
    """
    path = Path(path)
    if not path.exists():
        raise PromptFileError(f"prompt file not found: {str(path)!r}")
    if path.is_dir():
        raise PromptFileError(f"{str(path)!r} is a directory; pass the .safetensors file inside it")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PromptFileError(f"cannot read prompt file {str(path)!r}: {exc}") from exc
    if _looks_like_safetensors(data[:9], len(data)):
        return _parse_safetensors(data, str(path))
    if _looks_like_pickle(data[:8]) or path.suffix.lower() in _PICKLE_SUFFIXES:
        if not allow_pickle:
            raise PickleFileError(
                f"{str(path)!r} is a pickle (torch.save) file, not safetensors; pickles can run code, so "
                "fpp-init refuses them by default. If you trust it, pass allow_pickle=True (CLI: --allow-pickle; "
                "it is then read with torch.load(weights_only=True)), or convert it once: "
                "fpp-init export FILE --allow-pickle --out prompt.safetensors"
            )
        return _load_pickle(data, path)
    return _parse_safetensors(data, str(path))  # reports truncation / corruption precisely


def _load_pickle(data: bytes, path: Path) -> FPPPrompt:
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PickleFileError(
            f"could not read {str(path)!r} with torch.load(weights_only=True) ({type(exc).__name__}: {exc}); "
            "it is corrupt, truncated or holds objects other than tensors and plain containers"
        ) from exc
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
    return FPPPrompt(ctx=ctx.detach().float().cpu().clone(), template=None)


def _check_tensor(ctx: torch.Tensor, where: str) -> None:
    if ctx.dim() != 2:
        hint = " (a class-specific CoOp ctx [n_cls, n_ctx, D] is not supported)" if ctx.dim() == 3 else ""
        raise PromptFormatError(f"'ctx' in {where} must be 2-D [n_ctx, D], got shape {tuple(ctx.shape)}{hint}")
    if not ctx.is_floating_point():
        raise PromptFormatError(f"'ctx' in {where} must be a float tensor, got {ctx.dtype}")
    if ctx.shape[0] == 0 or ctx.shape[1] == 0:
        raise PromptFormatError(f"'ctx' in {where} is empty: shape {tuple(ctx.shape)}")
    if not bool(torch.isfinite(ctx).all()):
        raise PromptFormatError(f"'ctx' in {where} contains NaN or Inf values; the prompt is unusable")


def _read_header(data: bytes, where: str) -> dict[str, Any]:
    if len(data) < 8:
        raise PromptFileError(f"{where} is truncated or empty ({len(data)} bytes); download or write it again")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8 or header_len > _MAX_HEADER:
        raise PromptFileError(f"{where} is truncated or not a safetensors file; download or write it again")
    try:
        header = json.loads(data[8 : 8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PromptFileError(f"{where} is corrupt or not a safetensors file (bad header: {exc})") from exc
    if not isinstance(header, dict):
        raise PromptFileError(f"{where} is corrupt or not a safetensors file (header is not a JSON object)")
    return header


def _parse_safetensors(data: bytes, where: str) -> FPPPrompt:
    from safetensors.torch import load as st_load

    header = _read_header(data, where)
    try:
        tensors = st_load(data)
    except Exception as exc:
        raise PromptFileError(
            f"{where} is corrupt or truncated ({type(exc).__name__}: {exc}); download or write it again"
        ) from exc
    if C.CTX_KEY not in tensors:
        raise PromptFormatError(f"{where} has no 'ctx' tensor (keys: {sorted(tensors)}); not an fpp-init prompt")
    ctx = tensors[C.CTX_KEY]
    _check_tensor(ctx, where)
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or meta.get("fpp_format") != C.FORMAT_NAME:
        raise PromptFormatError(
            f"{where} has no fpp-init metadata; it is not an fpp-init prompt file. To use a raw "
            "[n_ctx, D] tensor, wrap it: fpp_init.FPPPrompt(ctx=tensor, template=None)"
        )
    raw_version = meta.get("fpp_format_version")
    try:
        version = int(raw_version)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise PromptFormatError(
            f"{where}: missing or malformed fpp_format_version {raw_version!r}; the metadata was edited or "
            "written by another tool: re-export the prompt with fpp-init"
        ) from exc
    if version < 1:
        raise PromptFormatError(f"{where}: invalid fpp_format_version {version}; re-export the prompt with fpp-init")
    if version > C.FORMAT_VERSION:
        raise PromptVersionError(
            f"{where} uses prompt format version {version}, newer than this fpp-init understands "
            f"({C.FORMAT_VERSION}); upgrade: pip install -U fpp-init"
        )
    try:
        prompt = FPPPrompt.from_metadata(ctx.float(), meta)
    except PromptFormatError as exc:
        raise PromptFormatError(f"{where}: {exc}") from exc
    return prompt


def stored_dtype(path: str | os.PathLike[str]) -> str | None:
    """The dtype of ``ctx`` as stored in a safetensors file (``"F32"``, ``"F16"``, ...), if readable."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little")
            if len(head) < 8 or n > _MAX_HEADER:
                return None
            header = json.loads(fh.read(n).decode("utf-8"))
        return str(header[C.CTX_KEY]["dtype"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resolve_path(
    source: str | os.PathLike[str],
    filename: str | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    allow_pickle: bool = False,
) -> Path:
    """The local file behind ``source``: a path, ``hf://OWNER/REPO[@REV]/FILE``, or ``OWNER/REPO`` + ``filename``."""
    from . import hub

    if filename is not None:
        if not isinstance(source, str) or hub.is_hub_ref(source):
            raise HubError(f"with filename=, source must be a repository id OWNER/NAME, got {source!r}")
        source = f"{hub.HUB_SCHEME}{source}/{filename}"
    if hub.is_hub_ref(source):
        ref = hub.parse_hub_ref(str(source), revision=revision)
        if Path(ref.filename).suffix.lower() in _PICKLE_SUFFIXES and not allow_pickle:
            raise PickleFileError(
                f"{ref} is a pickle (torch.save) file; pickles can run code, so fpp-init refuses them by default. "
                "If you trust the repository, pass allow_pickle=True (read with torch.load(weights_only=True))"
            )
        return hub.download(ref, cache_dir=cache_dir, token=token, local_files_only=local_files_only)
    if revision is not None:
        raise HubError(
            f"revision={revision!r} applies only to Hub sources, not to the local path {os.fspath(source)!r}"
        )
    path = Path(source)
    if (
        not path.exists()
        and isinstance(source, str)
        and source.count("/") >= 1
        and ":" not in source
        and not source.startswith((".", "/", "~"))
    ):
        parts = source.split("/")
        hint = f"hf://{source}" if len(parts) >= 3 else f"load_fpp_prompt({source!r}, 'FILE.safetensors')"
        raise PromptFileError(f"prompt file not found: {source!r}. For a Hugging Face Hub file use {hint}")
    return path


def check_prompt(
    prompt: FPPPrompt,
    *,
    n_ctx: int | None = None,
    width: int | None = None,
    backbone: str | None = None,
    fingerprint: str | None = None,
    model: nn.Module | None = None,
    where: str = "prompt",
) -> None:
    """Raise :class:`~fpp_init.PromptMismatchError` unless ``prompt`` meets every given expectation.

    ``model`` is a clip-anytorch CLIP model: its text width and text-tower fingerprint
    (:func:`fpp_init.fingerprint_model`) must match the prompt's.
    """
    if n_ctx is not None and prompt.n_ctx != n_ctx:
        raise PromptMismatchError(
            f"{where} has n_ctx={prompt.n_ctx} context vectors but {n_ctx} were expected; "
            "pretrain with a template of that many tokens"
        )
    if width is not None and prompt.width != width:
        raise PromptMismatchError(
            f"{where} has width {prompt.width} but {width} was expected (a prompt of another backbone?)"
        )
    if backbone is not None:
        want, have = _norm_backbone(backbone), _norm_backbone(prompt.backbone or "")
        if want != have:
            raise PromptMismatchError(
                f"{where} was pretrained for backbone {prompt.backbone!r} but {backbone!r} was expected"
            )
    if model is not None:
        from ._pretrain import fingerprint_model

        model_width = int(model.positional_embedding.shape[-1]) if hasattr(model, "positional_embedding") else None
        if model_width is not None and model_width != prompt.width:
            raise PromptMismatchError(
                f"{where} has width {prompt.width} but the model's text tower has width {model_width} "
                f"(prompt backbone {prompt.backbone!r})"
            )
        model_fp = fingerprint_model(model)
        if fingerprint is not None and fingerprint != model_fp:
            raise PromptMismatchError(f"fingerprint={fingerprint!r} was given but the model's is {model_fp!r}")
        fingerprint = model_fp
    if fingerprint is not None and prompt.fingerprint != fingerprint:
        if prompt.fingerprint is None:
            raise PromptMismatchError(
                f"{where} records no text-tower fingerprint (converted from a tensor or a CoOp file), so it cannot "
                f"be checked against {fingerprint!r}; drop the fingerprint/model check or check width= instead"
            )
        raise PromptMismatchError(
            f"{where} was pretrained for text tower {prompt.fingerprint!r} (backbone {prompt.backbone!r}) but the "
            f"expected one is {fingerprint!r}; pretrain a prompt for this model (other weights give other prompts)"
        )


def _norm_backbone(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def load_fpp_prompt(
    source: str | os.PathLike[str] | FPPPrompt,
    filename: str | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    allow_pickle: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    n_ctx: int | None = None,
    width: int | None = None,
    backbone: str | None = None,
    fingerprint: str | None = None,
    model: nn.Module | None = None,
) -> FPPPrompt:
    """Load and validate a prompt from a local file or the Hugging Face Hub.

    Args:
        source: a local ``.safetensors`` path; a Hub reference
            ``hf://OWNER/REPO[@REVISION]/PATH/FILE.safetensors``; a repository id
            ``OWNER/REPO`` together with ``filename``; or an :class:`FPPPrompt` (checked only).
        filename: the file inside the repository when ``source`` is ``OWNER/REPO``.
        revision: branch, tag or commit of a Hub source (instead of ``@REVISION``).
        cache_dir: Hugging Face cache folder (default: ``HF_HUB_CACHE`` / ``HF_HOME``).
        token: Hub token (default: ``HF_TOKEN`` or the stored login).
        local_files_only: never touch the network (also when ``HF_HUB_OFFLINE=1``).
        allow_pickle: read a trusted ``.pt``/``.pth`` (CoOp) file with
            ``torch.load(weights_only=True)`` instead of refusing it.
        device, dtype: move / cast ``ctx``.
        n_ctx, width, backbone, fingerprint: expectations; a mismatch raises
            :class:`~fpp_init.PromptMismatchError` naming both sides.
        model: a clip-anytorch CLIP model whose width and text-tower fingerprint must match.

    Raises:
        PromptFileError, PickleFileError, PromptFormatError, PromptVersionError, HubError,
        PromptMismatchError: see their messages; nothing is returned half-checked.
    """
    if isinstance(source, FPPPrompt):
        prompt, where = source, "prompt"
    else:
        path = resolve_path(
            source,
            filename,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            allow_pickle=allow_pickle,
        )
        prompt = load_local(path, allow_pickle=allow_pickle)
        where = f"prompt {os.fspath(source)!r}" + (f" / {filename!r}" if filename else "")
    check_prompt(prompt, n_ctx=n_ctx, width=width, backbone=backbone, fingerprint=fingerprint, model=model, where=where)
    if device is not None or dtype is not None:
        if dtype is not None and not dtype.is_floating_point:
            raise ConfigError(f"dtype must be a floating-point dtype such as torch.float16, got {dtype}")
        prompt = prompt.to(device=device, dtype=dtype)
    return prompt
