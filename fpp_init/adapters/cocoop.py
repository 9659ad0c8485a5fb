"""TPT's CoCoOp path (azshue/TPT ``clip/cocoop.py``, ``get_cocoop``).

The prompt learner is ``model.prompt_generator``: ``ctx`` plus a meta-net, no ``reset()`` and no
``ctx_init_state``; ``gen_ctx(images, aug)`` starts each sample's tuning from ``ctx`` shifted by the
image-dependent meta-net bias. The FPP prompt becomes ``prompt_generator.ctx`` (the base of that
shift), pretrained without the bias; the alignment target is the (loaded, trained) ``ctx``.
"""

from __future__ import annotations

import torch

from ._base import PromptDesign, single

__all__ = ["CoCoOpDesign"]


class CoCoOpDesign(PromptDesign):
    name = "cocoop"
    description = "CoCoOp design (prompt_generator.ctx + meta-net bias)"
    learner_attr = "prompt_generator"
    required = ()
    replaced = ()
    marks = ("prompt_generator", "meta_net")

    def template(self) -> str | None:
        return None  # TPT's --cocoop always loads a trained ctx: not the template's words

    def current_init(self) -> torch.Tensor:
        return single(self.ctx, "prompt_generator.ctx")

    def install(self, prompt_ctx: torch.Tensor) -> None:
        self.write_ctx(prompt_ctx)
