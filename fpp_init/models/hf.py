"""Hugging Face ``transformers`` CLIP models: loading by reference, tokenizer, text tower.

``load_hf`` takes a Hub id (``ORG/REPO``) or a local folder written by ``save_pretrained``;
``from_pretrained`` resolves it, so the Hugging Face cache, ``HF_HUB_OFFLINE`` and ``HF_TOKEN``
apply as everywhere else.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import constants as const
from .._deps import require
from .._hubenv import cache_only_reason, quiet_hub
from .._io import first_line
from .._runtime import global_rng_kept
from ..errors import ClassNameError, ModelLoadError
from ..towers import CausalTextTower, hf_spec
from ..towers._base import attr_as
from ..towers.hf import hf_text_transformer
from ._base import TextModel, Tokenizer
from .clip import ClipTokenizer

logger = logging.getLogger(__name__)

__all__ = ["TransformersTokenizer", "import_transformers", "load_hf", "text_model_from_hf"]

#: Size of CLIP's BPE vocabulary (49,406 merges and bytes + <|startoftext|> + <|endoftext|>).
CLIP_VOCAB_SIZE = 49408
#: ``eos_token_id`` of text configs written before transformers 4.31: features are read at ``argmax(ids)``.
_LEGACY_EOS = 2


def import_transformers() -> Any:
    """The ``transformers`` module with its CLIP classes importable, or a one-line error saying what to install."""
    transformers = require("transformers", "transformers", "a Hugging Face transformers CLIP model ('hf:' reference)")
    try:
        transformers.CLIPModel  # noqa: B018  (a lazy import: fails where this release does not support the torch here)
    except (ImportError, RuntimeError, AttributeError) as exc:
        raise ModelLoadError(
            f"transformers {transformers.__version__} cannot import its CLIP classes with torch {torch.__version__} "
            f"({first_line(exc)}); with torch < 2.1 install 'transformers<4.50'"
        ) from None
    return transformers


class TransformersTokenizer:
    """A transformers ``CLIPTokenizer`` / ``CLIPTokenizerFast`` as FPP's :class:`Tokenizer`.

    ``clean`` is applied to a text first (OpenCLIP's ``HFTokenizer`` cleans before tokenizing). The
    ids are those the model's own pipeline uses; they equal OpenAI's except where the fast tokenizer
    (the only one in transformers 5.x) skips OpenAI's ftfy / ``html.unescape`` cleaning: HTML
    entities, ligatures, full-width letters, mojibake.
    ``argmax_read``: the model reads its feature at the largest id (configs from before
    transformers 4.31, and OpenCLIP's default pooling), so ids above ``<|endoftext|>`` (tokens
    added later, e.g. by textual inversion) are refused: the model would read there, not at the EOS.
    """

    def __init__(self, tokenizer: Any, *, clean: Callable[[str], str] | None = None, argmax_read: bool = False) -> None:
        name = type(tokenizer).__name__
        bos, eos = getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "eos_token_id", None)
        if not name.startswith("CLIPTokenizer") or bos is None or eos is None:
            raise ModelLoadError(
                f"the tokenizer is {name}, not CLIP's BPE tokenizer (CLIPTokenizer with <|startoftext|> and "
                "<|endoftext|>); FPP builds '<|startoftext|> template class. <|endoftext|>' prompts with it"
            )
        self._tok, self._clean, self._argmax_read = tokenizer, clean, argmax_read
        self.sot_id, self.eot_id = int(bos), int(eos)
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = self.eot_id if pad is None else int(pad)

    def encode(self, text: str) -> list[int]:
        ids = [
            int(i) for i in self._tok(self._clean(text) if self._clean else text, add_special_tokens=False)["input_ids"]
        ]
        if self._argmax_read and any(i > self.eot_id for i in ids):
            raise ClassNameError(
                f"{text!r} has tokens added after <|endoftext|> (ids above {self.eot_id}); this model reads its text "
                "feature at the largest token id (eos_token_id 2, from before transformers 4.31), not at the end of "
                f"the prompt; leave those words out or set the text config's eos_token_id to {self.eot_id}"
            )
        return ids


def _name_backbone(name: object) -> str | None:
    """``hf:ORG/REPO`` (or ``hf:FOLDER`` for a local folder) from a ``name_or_path``."""
    if not isinstance(name, str) or not name.strip():
        return None
    return f"{const.HF_PREFIX}{Path(name).name if os.path.isdir(name) else name}"


def text_model_from_hf(model: nn.Module, tokenizer: Any = None, backbone: str | None = None) -> TextModel:
    """The :class:`TextModel` of a transformers ``CLIPModel``, ``CLIPTextModelWithProjection`` or ``CLIPTextModel``.

    ``tokenizer``: the model's transformers ``CLIPTokenizer`` (default: CLIP's BPE as bundled with
    clip-anytorch, which every CLIP checkpoint with a 49,408-token vocabulary uses).
    ``backbone``: the name recorded in prompt files (default: ``hf:`` + the model's ``name_or_path``).
    :class:`ModelLoadError` if the text tower is not one FPP's fast exact path reproduces.
    """
    what = f"transformers {type(model).__name__}"
    why: list[str] = []
    spec = hf_spec(model, why=why)
    text = hf_text_transformer(model)
    if spec is None or text is None:
        reason = why[0] if why else "no CLIP text transformer"
        raise ModelLoadError(
            f"{what} is not a causal CLIP text tower that FPP's fast exact path reproduces ({reason}); "
            "use a CLIPModel, CLIPTextModelWithProjection or CLIPTextModel"
        )
    eos = getattr(text, "eos_token_id", None)  # absent before transformers 4.31: always argmax
    if isinstance(eos, (list, tuple)):
        raise ModelLoadError(
            f"{what} has several eos_token_id {list(eos)}; FPP needs the one token its features are read at"
        )
    argmax_read = eos is None or eos == _LEGACY_EOS
    embedding = attr_as(text, "embeddings.token_embedding.weight", torch.Tensor)
    vocab = int(embedding.shape[0])
    if tokenizer is None:
        if vocab != CLIP_VOCAB_SIZE:
            raise ModelLoadError(
                f"{what} has a {vocab}-token vocabulary, not CLIP's {CLIP_VOCAB_SIZE}, so CLIP's own tokenizer may not "
                f"fit it; load it by reference ('{const.HF_PREFIX}ORG/REPO' or its folder) so that its tokenizer is used"
            )
        tok: Tokenizer = ClipTokenizer()
    else:
        tok = TransformersTokenizer(tokenizer, argmax_read=argmax_read)
    if not argmax_read and eos != tok.eot_id:
        raise ModelLoadError(
            f"{what} reads its text feature at token id {eos} (eos_token_id) but its tokenizer ends prompts with "
            f"{tok.eot_id}; set the text config's eos_token_id to {tok.eot_id} if that is its end-of-text token"
        )
    if backbone is None:
        backbone = _name_backbone(getattr(model, "name_or_path", None))
    return TextModel(
        model=model,
        tower=CausalTextTower(spec),
        tokenizer=tok,
        token_embedding=embedding,
        library="transformers",
        backbone=backbone,
    )


def _model_class(transformers: Any, config: Any, ref: str) -> Any:
    model_type = getattr(config, "model_type", None)
    if model_type == "clip":
        return transformers.CLIPModel
    if model_type == "clip_text_model":
        archs = getattr(config, "architectures", None) or []
        return transformers.CLIPTextModel if archs == ["CLIPTextModel"] else transformers.CLIPTextModelWithProjection
    raise ModelLoadError(
        f"{ref!r} is a transformers {model_type!r} model, not CLIP (model_type 'clip' or 'clip_text_model'); "
        "FPP's fast exact path needs a causal CLIP text tower"
    )


def load_hf(ref: str, device: torch.device) -> TextModel:
    """Load a transformers CLIP model and its ``CLIPTokenizer`` from a Hub id ``ORG/REPO`` or a local folder.

    The class follows the config (``CLIPModel``; ``CLIPTextModelWithProjection`` or ``CLIPTextModel``
    for text-only checkpoints). The caller's global RNG state is preserved. Failures become
    :class:`ModelLoadError` with what to do.
    """
    transformers = import_transformers()
    local = os.path.isdir(ref)
    where = f"folder {ref!r}" if local else f"{const.HF_PREFIX}{ref}"
    cache_only = None if local else cache_only_reason()  # offline: answer from the cache at once, no retries
    if local:
        hint = "a folder written by save_pretrained (config.json, weights, tokenizer files)"
    elif cache_only:
        hint = (
            f"{cache_only}, so only the local Hugging Face cache was used: download it on a connected machine into "
            "the same cache (HF_HUB_CACHE / HF_HOME), or pass a local folder"
        )
    else:
        hint = "check the name, or pass a local folder written by save_pretrained"
    cache_kwargs = {"local_files_only": True} if cache_only else {}
    with global_rng_kept(device), quiet_hub():
        try:
            config = transformers.AutoConfig.from_pretrained(ref, **cache_kwargs)
            cls = _model_class(transformers, config, ref)
            model = cls.from_pretrained(ref, config=config, **cache_kwargs)
            tokenizer = transformers.CLIPTokenizer.from_pretrained(ref, **cache_kwargs)
        except ModelLoadError:
            raise
        except Exception as exc:  # OSError, HFValidationError, ValueError, EnvironmentError, ...
            raise ModelLoadError(
                f"could not load the transformers CLIP model {where} ({type(exc).__name__}: {first_line(exc)}); {hint}"
            ) from None
    model = model.to(device)
    if device.type == "cpu" and model.dtype in (torch.float16, torch.bfloat16):
        model = model.float()  # as clip.load on CPU
    logger.info("loaded transformers %s %s on %s", type(model).__name__, ref, device)
    backbone = f"{const.HF_PREFIX}{Path(ref).resolve().name if local else ref}"
    return text_model_from_hf(model.eval(), tokenizer, backbone)
