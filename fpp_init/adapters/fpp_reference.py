"""The FPP reference design (YonseiML/fpp ``clip/custom_clip_iptp_bas.py``): the TPT design whose text
encoder is ``forward(prompts, tokenized_prompts, aux_outputs)`` and returns ``(features, aux_outputs)``."""

from __future__ import annotations

from typing import Any

from ._base import PromptDesign

__all__ = ["FPPReferenceDesign"]


class FPPReferenceDesign(PromptDesign):
    name = "fpp_reference"
    description = "FPP reference design (text encoder with aux_outputs)"
    call = "aux"

    def encoder_args(self) -> tuple[Any, ...]:
        return (None,)  # no auxiliary outputs requested; the tuple's features are taken
