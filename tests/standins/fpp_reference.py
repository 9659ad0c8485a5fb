"""Stand-in of the FPP reference design: YonseiML/fpp at bb9917f, ``fpp_classification.py`` with
``clip/custom_clip_iptp_bas.py`` and its vendored ``clip/model.py``: the TPT prompt learner, and a text
encoder ``forward(prompts, tokenized_prompts, aux_outputs)`` returning ``(x, aux_outputs)`` whose
transformer blocks return tuples."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .tpt import ClipTestTimeTuning


class AuxBlock(nn.Module):
    """A residual block returning ``(x, aux_outputs)`` (FPP / O-TPT vendored ``clip/model.py``)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.attn, self.ln_1, self.mlp, self.ln_2 = block.attn, block.ln_1, block.mlp, block.ln_2
        self.attn_mask = block.attn_mask

    def forward(self, x: torch.Tensor, aux_outputs: Any = None) -> tuple[torch.Tensor, Any]:
        mask = self.attn_mask.to(dtype=x.dtype, device=x.device)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=True, attn_mask=mask)[0]
        x = x + self.mlp(self.ln_2(x))
        return x, aux_outputs


class AuxTransformer(nn.Module):
    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.width, self.layers = transformer.width, transformer.layers
        self.resblocks = nn.Sequential(*[AuxBlock(b) for b in transformer.resblocks])

    def forward(self, x: torch.Tensor, aux_outputs: Any = None) -> tuple[torch.Tensor, Any]:
        for block in self.resblocks:
            x, aux_outputs = block(x, aux_outputs)
        return x, aux_outputs


class AuxTextEncoder(nn.Module):
    """``text_encoder(prompts, tokenized_prompts, aux_outputs)`` -> ``(features, aux_outputs)``."""

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.transformer = AuxTransformer(clip_model.transformer)
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype

    def forward(
        self, prompts: torch.Tensor, tokenized_prompts: torch.Tensor, aux_outputs: Any
    ) -> tuple[torch.Tensor, Any]:
        x = prompts + self.positional_embedding.type(self.dtype)
        x, aux_outputs = self.transformer(x.permute(1, 0, 2), aux_outputs)
        x = self.ln_final(x.permute(1, 0, 2)).type(self.dtype)
        x = x[torch.arange(x.shape[0]), tokenized_prompts.argmax(dim=-1)] @ self.text_projection
        return x, aux_outputs


class FPPClipTestTimeTuning(ClipTestTimeTuning):
    """The reference's ``ClipTestTimeTuning``: the text encoder is called with ``aux_outputs``."""

    def get_text_features(self) -> torch.Tensor:
        feats, _ = self.text_encoder(self.prompt_learner(), self.prompt_learner.tokenized_prompts, None)
        return feats / feats.norm(dim=-1, keepdim=True)


def get_fpp_reference(clip_model: nn.Module, classnames: list[str], **kw: Any) -> FPPClipTestTimeTuning:
    """A fresh FPP-reference stand-in on a private copy of ``clip_model`` (same weights)."""
    return FPPClipTestTimeTuning(copy.deepcopy(clip_model), classnames, encoder=AuxTextEncoder, **kw)


COVERS = {"fpp_reference": get_fpp_reference}
