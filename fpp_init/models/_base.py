"""What the front doors need from a CLIP model of any library: :class:`TextModel`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from ..towers import TextTower

__all__ = ["Tokenizer", "TextModel"]


class Tokenizer(Protocol):
    """A CLIP BPE tokenizer: ids of a text without the special tokens, and the special ids."""

    sot_id: int
    eot_id: int
    pad_id: int

    def encode(self, text: str) -> list[int]: ...


@dataclass
class TextModel:
    """A CLIP model's text side, library-independent.

    Attributes:
        model: the object holding the weights (frozen while fpp-init works on it).
        tower: the fast exact text tower.
        tokenizer: the model's tokenizer.
        token_embedding: ``[V, D]`` token embedding table.
        library: ``"clip"`` (clip-anytorch), ``"open_clip"`` or ``"transformers"``.
        backbone: a name for the weights (``"ViT-B/16"``, ``"open_clip:ViT-B-16/openai"``,
            ``"hf:openai/clip-vit-base-patch16"``, a checkpoint file name), if known.
    """

    model: nn.Module
    tower: TextTower
    tokenizer: Tokenizer
    token_embedding: torch.Tensor
    library: str
    backbone: str | None

    @property
    def width(self) -> int:
        return self.tower.width

    @property
    def context_length(self) -> int:
        return self.tower.context_length

    @property
    def device(self) -> torch.device:
        return self.tower.device

    def fingerprint(self) -> str:
        return self.tower.fingerprint()

    def read_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[N]`` positions whose hidden state is the feature, for token ids ``[N, L]``: the first EOS
        (towers that read elsewhere are refused when their TextModel is made)."""
        is_eot = tokens == self.tokenizer.eot_id
        return is_eot.int().argmax(dim=-1)  # the first EOS
