"""OpenCLIP (the ``open_clip`` package): loading by reference, tokenizer, text tower.

Supported: ``CLIP`` and ``CustomTextCLIP`` whose text tower is OpenCLIP's own causal
``TextTransformer`` read at the end-of-text token (the default ``argmax`` pooling, or ``eos``
pooling at CLIP's ``<|endoftext|>``). Everything else is refused with the reason, because FPP's
fast exact path (causal attention, features read at the EOS, positions after it never computed)
would not reproduce the model's features.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import constants as const
from .._deps import require
from .._hubenv import cache_only, cache_only_reason, quiet_hub
from .._io import first_line, path_stat
from .._runtime import global_rng_kept
from ..errors import ModelLoadError
from ..towers import CausalTextTower, TowerSpec, openai_spec
from ..towers._base import attr_as
from ._base import TextModel, Tokenizer
from .hf import CLIP_VOCAB_SIZE, TransformersTokenizer

logger = logging.getLogger(__name__)

__all__ = ["OpenClipTokenizer", "import_open_clip", "load_open_clip", "text_model_from_open_clip"]

HF_HUB_SCHEMA = "hf-hub:"
_SUPPORTED = "FPP supports causal CLIP text towers read at the end-of-text token (e.g. open_clip:ViT-B-16/openai)"


def import_open_clip() -> Any:
    """The ``open_clip`` module, or :class:`~fpp_init.errors.MissingDependencyError` naming the extra to install."""
    return require("open_clip", "open_clip", "an OpenCLIP model ('open_clip:' reference)")


class OpenClipTokenizer:
    """OpenCLIP's CLIP BPE tokenizer (``SimpleTokenizer``) as FPP's :class:`Tokenizer`: the ids of a
    text as ``encode`` gives them (OpenCLIP's cleaning, no special tokens); pads with 0 as OpenCLIP does."""

    def __init__(self, tokenizer: Any) -> None:
        encoder = getattr(tokenizer, "encoder", None)
        if not (callable(getattr(tokenizer, "encode", None)) and isinstance(encoder, dict)):
            raise ModelLoadError(f"{type(tokenizer).__name__} is not OpenCLIP's SimpleTokenizer")
        self._tok = tokenizer
        # OpenCLIP names them <start_of_text> / <end_of_text>; the ids are OpenAI's 49406 / 49407
        self.sot_id = int(getattr(tokenizer, "sot_token_id", None) or encoder["<start_of_text>"])
        self.eot_id = int(getattr(tokenizer, "eot_token_id", None) or encoder["<end_of_text>"])
        self.pad_id = 0

    def encode(self, text: str) -> list[int]:
        return [int(i) for i in self._tok.encode(text)]


def _tokenizer(open_clip: Any, tokenizer: Any, what: str) -> Tokenizer:
    """FPP's tokenizer for what ``open_clip.get_tokenizer`` returned (``None``: the bundled CLIP BPE)."""
    if tokenizer is None or tokenizer is getattr(open_clip, "tokenize", None):  # open_clip < 2.2x returns the function
        return OpenClipTokenizer(open_clip.tokenizer._tokenizer)
    if type(tokenizer).__name__ == "HFTokenizer":  # open_clip < 3 for every hf-hub model; later for hf_tokenizer_name
        inner = getattr(tokenizer, "tokenizer", None)
        if type(inner).__name__.startswith("CLIPTokenizer"):
            clean = getattr(tokenizer, "clean_fn", None)
            if clean is None:
                from open_clip.tokenizer import basic_clean, whitespace_clean

                def clean(text: str) -> str:
                    cleaned: str = whitespace_clean(basic_clean(text))  # (open_clip is untyped)
                    return cleaned

            return TransformersTokenizer(inner, clean=clean, argmax_read=True)
        raise ModelLoadError(
            f"{what} uses the tokenizer {type(inner).__name__} (through OpenCLIP's HFTokenizer), not CLIP's BPE; "
            f"FPP builds CLIP prompts ('<|startoftext|> template class. <|endoftext|>'). {_SUPPORTED}"
        )
    if hasattr(tokenizer, "encoder") and hasattr(tokenizer, "encode"):
        return OpenClipTokenizer(tokenizer)
    raise ModelLoadError(
        f"{what} uses the tokenizer {type(tokenizer).__name__}, not CLIP's BPE; FPP builds CLIP prompts. {_SUPPORTED}"
    )


@dataclass
class _TextParts:
    """The text tower of an OpenCLIP model: ``CLIP`` holds it flattened, ``CustomTextCLIP`` in ``.text``."""

    transformer: nn.Module
    token_embedding: nn.Embedding
    positional_embedding: torch.Tensor
    ln_final: nn.Module
    text_projection: Any
    attn_mask: torch.Tensor | None
    pool_type: str
    eos_id: int | None
    cls_emb: torch.Tensor | None


_PARTS = ("transformer", "token_embedding", "positional_embedding", "ln_final")


def _text_parts(model: nn.Module, what: str) -> _TextParts:
    text = getattr(model, "text", None)
    if isinstance(text, nn.Module):  # CustomTextCLIP, CoCa
        name = type(text).__name__
        if name == "HFTextEncoder":
            hf = getattr(getattr(getattr(text, "transformer", None), "config", None), "_name_or_path", None) or "?"
            raise ModelLoadError(
                f"{what} has a Hugging Face text encoder (HFTextEncoder around {hf}: bidirectional attention, "
                "mean or CLS pooling), not a causal CLIP text transformer, so FPP's fast exact path does not "
                f"apply. {_SUPPORTED}"
            )
        if not all(hasattr(text, a) for a in _PARTS):
            raise ModelLoadError(f"{what} has the text tower {name}, not OpenCLIP's TextTransformer. {_SUPPORTED}")
        src, pool, eos, cls = (
            text,
            getattr(text, "pool_type", "argmax"),
            getattr(text, "eos_id", None),
            getattr(text, "cls_emb", None),
        )
    elif all(hasattr(model, a) for a in _PARTS):  # CLIP (open_clip < 2.23 has no pool types: always argmax)
        src, pool, eos, cls = (
            model,
            getattr(model, "text_pool_type", "argmax"),
            getattr(model, "text_eos_id", None),
            None,
        )
    else:
        raise ModelLoadError(f"{what} has no OpenCLIP text tower (neither CLIP's text parts nor .text)")
    return _TextParts(
        transformer=attr_as(src, "transformer", nn.Module),
        token_embedding=attr_as(src, "token_embedding", nn.Embedding),
        positional_embedding=attr_as(src, "positional_embedding", torch.Tensor),
        ln_final=attr_as(src, "ln_final", nn.Module),
        text_projection=getattr(src, "text_projection", None),
        attn_mask=getattr(src, "attn_mask", None),
        pool_type=pool,
        eos_id=eos,
        cls_emb=cls,
    )


def _spec(parts: _TextParts, what: str) -> TowerSpec:
    """The tower's spec, or :class:`ModelLoadError` saying why FPP's fast exact path cannot reproduce it."""
    if parts.cls_emb is not None:
        raise ModelLoadError(
            f"{what} appends a learned CLS token after the padding (embed_cls, as in CoCa) and reads its feature "
            "there, so its features depend on the padded length; FPP's fast exact path reads at the end-of-text "
            f"token and does not apply. {_SUPPORTED}"
        )
    if parts.attn_mask is None:
        raise ModelLoadError(
            f"{what} has a bidirectional text tower (no causal mask, as SigLIP, CLIPA and MobileCLIP-S*): every "
            "position sees the padding, so FPP's fast exact path (causal, cut at the end-of-text token) does not "
            f"apply. {_SUPPORTED}"
        )
    pool = parts.pool_type
    if pool == "last":
        raise ModelLoadError(
            f"{what} reads its text feature at the last position (pool_type 'last'), which sees the padding, so its "
            f"features depend on the padded length; FPP's fast exact path reads at the end-of-text token. {_SUPPORTED}"
        )
    if pool == "first":
        raise ModelLoadError(
            f"{what} reads its text feature at position 0 (pool_type 'first'), which under the causal mask sees only "
            f"the start token: the feature does not depend on the prompt, so there is nothing to pretrain. {_SUPPORTED}"
        )
    if pool not in ("argmax", "eos"):
        raise ModelLoadError(
            f"{what} has no pooled text feature (pool_type {pool!r}); FPP needs one feature per prompt. {_SUPPORTED}"
        )
    why: list[str] = []
    spec = openai_spec(
        parts.transformer,
        parts.positional_embedding,
        parts.ln_final,
        parts.text_projection,
        attn_mask=parts.attn_mask,
        why=why,
    )
    if spec is None:
        raise ModelLoadError(
            f"{what}'s text tower is not a plain pre-LayerNorm causal CLIP transformer ({why[0] if why else '?'}), "
            f"so FPP's fast exact path cannot reproduce it. {_SUPPORTED}"
        )
    return spec


def _text_model(
    open_clip: Any,
    model: nn.Module,
    parts: _TextParts,
    spec: TowerSpec,
    tokenizer: Any,
    backbone: str | None,
    what: str,
) -> TextModel:
    vocab = int(parts.token_embedding.weight.shape[0])
    if tokenizer is None and vocab != CLIP_VOCAB_SIZE:
        raise ModelLoadError(
            f"{what} has a {vocab}-token vocabulary, not CLIP's {CLIP_VOCAB_SIZE}; load it by reference "
            f"('{const.OPEN_CLIP_PREFIX}ARCH/PRETRAINED') so that its own tokenizer is used"
        )
    tok = _tokenizer(open_clip, tokenizer, what)
    if parts.pool_type == "eos" and parts.eos_id != tok.eot_id:
        raise ModelLoadError(
            f"{what} reads its text feature at token id {parts.eos_id} (pool_type 'eos') but its tokenizer ends "
            f"prompts with {tok.eot_id}; FPP reads at the tokenizer's end-of-text token. {_SUPPORTED}"
        )
    return TextModel(
        model=model,
        tower=CausalTextTower(spec),
        tokenizer=tok,
        token_embedding=parts.token_embedding.weight,
        library="open_clip",
        backbone=backbone,
    )


def text_model_from_open_clip(model: nn.Module, tokenizer: Any = None, backbone: str | None = None) -> TextModel:
    """The :class:`TextModel` of an OpenCLIP ``CLIP`` or ``CustomTextCLIP``.

    ``tokenizer``: what ``open_clip.get_tokenizer`` gave for the model (default: CLIP's BPE, which
    every OpenCLIP model with a causal text tower and a 49,408-token vocabulary uses).
    :class:`ModelLoadError`, with the reason, for towers FPP's fast exact path does not reproduce:
    pooling other than at the end-of-text token, no causal mask (SigLIP, CLIPA, ...), an appended
    CLS token (CoCa), a Hugging Face text encoder, a projection bias, custom-block extras.
    """
    open_clip = import_open_clip()
    what = f"OpenCLIP {backbone or type(model).__name__}"
    parts = _text_parts(model, what)
    return _text_model(open_clip, model, parts, _spec(parts, what), tokenizer, backbone, what)


def _resolve(open_clip: Any, ref: str) -> tuple[str, str | None, bool, str]:
    """``(model name, pretrained, force_quick_gelu, backbone)`` of ``ARCH/PRETRAINED`` or ``hf-hub:ORG/REPO``."""
    usage = (
        f"use '{const.OPEN_CLIP_PREFIX}ARCH/PRETRAINED' (e.g. '{const.OPEN_CLIP_PREFIX}ViT-B-16/openai'; ARCH from "
        "open_clip.list_models(), PRETRAINED a tag from open_clip.list_pretrained_tags_by_model(ARCH) or a checkpoint "
        f"file) or '{const.OPEN_CLIP_PREFIX}{HF_HUB_SCHEMA}ORG/REPO'"
    )
    if ref.startswith(HF_HUB_SCHEMA):
        if ref[len(HF_HUB_SCHEMA) :].strip("/").count("/") != 1:
            raise ModelLoadError(f"OpenCLIP reference {ref!r} is not {HF_HUB_SCHEMA}ORG/REPO; {usage}")
        return ref, None, False, f"{const.OPEN_CLIP_PREFIX}{ref}"
    arch, _, pretrained = ref.partition("/")
    if not arch or not pretrained:
        raise ModelLoadError(f"OpenCLIP reference {ref!r} does not name the weights; {usage}")
    if arch not in open_clip.list_models():
        raise ModelLoadError(f"unknown OpenCLIP architecture {arch!r} (in {ref!r}); {usage}")
    tag = open_clip.get_pretrained_cfg(arch, pretrained)
    if not tag and path_stat(pretrained, what="OpenCLIP checkpoint", error=ModelLoadError) is None:
        tags = list(open_clip.list_pretrained_tags_by_model(arch))
        raise ModelLoadError(
            f"unknown pretrained weights {pretrained!r} for OpenCLIP {arch!r}; use one of {tags} or the path of a "
            "checkpoint file"
        )
    # weights trained with QuickGELU (OpenAI's and some others) in a GELU config: build the model they were trained as
    quick_gelu = bool(tag.get("quick_gelu", False))
    return (
        arch,
        pretrained,
        quick_gelu,
        f"{const.OPEN_CLIP_PREFIX}{arch}/{pretrained if tag else Path(pretrained).name}",
    )


class _NotFrom(logging.Filter):
    """Drops records logged from files under ``folder``."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.pathname.startswith(self.folder)


@contextlib.contextmanager
def _quiet_root_log(module: Any) -> Iterator[None]:
    """OpenCLIP reports a failed download with ``logging.error`` on the root logger and then raises the
    same message, which our one-line error repeats: drop its root records unless fpp-init logs at INFO."""
    if logging.getLogger("fpp_init").isEnabledFor(logging.INFO):
        yield
        return
    root, drop = logging.getLogger(), _NotFrom(os.path.dirname(module.__file__))
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def load_open_clip(ref: str, device: torch.device) -> TextModel:
    """Load an OpenCLIP model and its tokenizer: ``ARCH/PRETRAINED`` or ``hf-hub:ORG/REPO``.

    Goes through ``open_clip.create_model`` (with ``require_pretrained``) and
    ``open_clip.get_tokenizer``, so OpenCLIP's and Hugging Face's caches and offline modes
    apply. The caller's global RNG state is preserved. Failures become :class:`ModelLoadError`.
    """
    open_clip = import_open_clip()
    name, pretrained, quick_gelu, backbone = _resolve(open_clip, ref)
    # weights from the Hub (hf-hub: names, and the tags OpenCLIP hosts there): offline, answer from the cache at once
    remote = pretrained is None or not os.path.isfile(pretrained)
    offline = cache_only_reason() if remote else None
    hint = (
        f"{offline}, so only the local OpenCLIP / Hugging Face cache was used: download it on a connected machine "
        "into the same cache"
        if offline
        else "Offline? Download it on a connected machine into the OpenCLIP / Hugging Face cache (HF_HUB_OFFLINE=1 "
        "then uses it)"
    )
    with global_rng_kept(device), quiet_hub(), _quiet_root_log(open_clip), cache_only(offline is not None):
        try:
            model = open_clip.create_model(
                name, pretrained, device=device, force_quick_gelu=quick_gelu, require_pretrained=True
            )
        except Exception as exc:  # RuntimeError, OSError, HTTP and Hub errors, unpickling errors, ...
            raise ModelLoadError(
                f"could not load OpenCLIP {ref!r} ({type(exc).__name__}: {first_line(exc)}); {hint}, or pass a "
                f"checkpoint file: '{const.OPEN_CLIP_PREFIX}ARCH/PATH'"
            ) from None
        model = model.eval()
        what = f"OpenCLIP {backbone}"
        parts = _text_parts(model, what)
        spec = _spec(parts, what)  # refuse an unsupported tower before fetching its tokenizer
        try:
            tokenizer = open_clip.get_tokenizer(name)
        except Exception as exc:
            raise ModelLoadError(
                f"could not load the tokenizer of OpenCLIP {ref!r} ({type(exc).__name__}: {first_line(exc)}); {hint}"
            ) from None
    logger.info("loaded OpenCLIP %s on %s", ref, device)
    return _text_model(open_clip, model, parts, spec, tokenizer, backbone, what)
