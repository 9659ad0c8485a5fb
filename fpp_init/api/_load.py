"""``load_fpp_prompt``: a prompt from a local file or the Hugging Face Hub, checked against expectations."""

from __future__ import annotations

import os
from typing import Any

import torch

from .._validate import check_device, check_dtype, check_int, check_str
from ..artifacts import FPPPrompt
from ..artifacts.fpp_prompt import current_ctx
from ..artifacts.sources import HubAccess, read_source
from ..errors import PromptMismatchError
from ..models import text_model

__all__ = ["load_fpp_prompt"]


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
    dtype: torch.dtype | str | None = None,
    n_ctx: int | None = None,
    width: int | None = None,
    backbone: str | None = None,
    fingerprint: str | None = None,
    model: Any = None,
) -> FPPPrompt:
    """Load and validate a prompt from a local file or the Hugging Face Hub.

    Args:
        source: a local ``.safetensors`` path; a Hub reference
            ``hf://OWNER/REPO[@REVISION]/PATH/FILE.safetensors`` (``hf://datasets/...`` for a
            dataset repository); a repository id ``OWNER/REPO`` together with ``filename``; or
            an :class:`FPPPrompt` (checked only).
        filename: the file inside the repository when ``source`` is ``OWNER/REPO``.
        revision: branch, tag or commit of a Hub source (instead of ``@REVISION``).
        cache_dir: Hugging Face cache folder (default: ``HF_HUB_CACHE`` / ``HF_HOME``).
        token: Hub token (default: ``HF_TOKEN`` or the stored login).
        local_files_only: never touch the network (also when ``HF_HUB_OFFLINE=1``).
        allow_pickle: read a trusted ``.pt``/``.pth`` (CoOp) file with
            ``torch.load(weights_only=True)`` instead of refusing it.
        device: move ``ctx`` there.
        dtype: cast ``ctx`` to it (a dtype or its name: ``"float16"``).
        n_ctx: the context length expected; a mismatch raises
            :class:`~fpp_init.errors.PromptMismatchError` naming both sides (as for the next three).
        width: the embedding width expected.
        backbone: the backbone name expected.
        fingerprint: the text-tower fingerprint expected (see :func:`fingerprint_model`).
        model: a CLIP model (any library, see :func:`pretrain_flat_prompt`) whose width and
            text-tower fingerprint must match.

    Raises:
        PromptFileError: the file cannot be read as a prompt file (missing, truncated, not safetensors).
        PickleFileError: a pickle file without ``allow_pickle=True``.
        PromptFormatError: no ``ctx`` key, or missing / malformed fpp-init metadata.
        PromptVersionError: a file of a newer format version.
        PromptShapeError: a ``ctx`` that is not a finite, non-empty, floating ``[n_ctx, D]`` tensor.
        HubError: a Hub reference that cannot be resolved or downloaded.
        PromptMismatchError: the prompt does not fit an expectation or ``model``.
        ConfigError: an argument of the wrong type or value. Nothing is returned half-checked.
    """
    dev = None if device is None else check_device(device)
    dt = None if dtype is None else check_dtype(dtype)
    for name, value in (("n_ctx", n_ctx), ("width", width)):
        if value is not None:
            check_int(value, name, min=1)
    check_str(backbone, "backbone", allow_none=True)
    check_str(fingerprint, "fingerprint", allow_none=True)
    if isinstance(source, FPPPrompt):
        current_ctx(source)  # changed in place since it was made?
        prompt, where = source, "prompt"
    else:
        prompt = read_source(
            source,
            filename,
            access=HubAccess(revision, cache_dir, token, local_files_only),
            allow_pickle=allow_pickle,
        ).prompt
        where = f"prompt {os.fspath(source)!r}" + (f" / {filename!r}" if filename else "")
    if model is not None:
        tm = text_model(model)
        prompt.check(width=tm.width, where=where)
        model_fp = tm.fingerprint()
        if fingerprint is not None and fingerprint != model_fp:
            raise PromptMismatchError(f"fingerprint={fingerprint!r} was given but the model's is {model_fp!r}")
        fingerprint = model_fp
    prompt.check(n_ctx=n_ctx, width=width, backbone=backbone, fingerprint=fingerprint, where=where)
    if dev is not None or dt is not None:
        prompt = prompt.to(device=dev, dtype=dt)
    return prompt
