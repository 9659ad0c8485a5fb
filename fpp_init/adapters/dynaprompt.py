"""The DynaPrompt design (zzzx1224/DynaPrompt ``clip/custom_clip_lessctx.py``).

``ctx`` is a zero-initialised residual (``[num_p, n_ctx, D]`` with several prompts) and the
forward uses ``ctx + init_ctx``, ``init_ctx`` a plain tensor (the last ``n_ctx`` template words;
``token_prefix`` holds SOS plus the leading ones). The FPP prompt goes into ``init_ctx``; the
residual and its ``ctx_init_state`` stay as they are (zero), so ``reset()`` restores the FPP prompt.
"""

from __future__ import annotations

import torch

from ..errors import AdapterError
from ._base import single
from .tpt import TPTDesign

__all__ = ["DynaPromptDesign"]


class DynaPromptDesign(TPTDesign):
    name = "dynaprompt"
    description = "DynaPrompt design (zero residual ctx + init_ctx)"
    required = (*TPTDesign.required, ("init_ctx", "the prompt its forward adds to the residual ctx"))
    replaced = ("init_ctx",)
    marks = ("init_ctx",)

    @property
    def n_ctx(self) -> int:
        return int(self.learner.init_ctx.shape[-2])

    def check_layout(self) -> None:
        super().check_layout()
        if self.learner.init_ctx.shape[-1] != self.width:
            raise AdapterError(f"{self.where}: init_ctx width differs from ctx width")

    def _residual(self) -> torch.Tensor:
        return single(self.learner.ctx_init_state, "prompt_learner.ctx_init_state")

    def current_init(self) -> torch.Tensor:
        init: torch.Tensor = self.learner.init_ctx
        return init.detach().float().cpu() + self._residual()

    def install(self, prompt_ctx: torch.Tensor) -> None:
        init = self.learner.init_ctx
        residual = self._residual().to(init.device)
        self.learner.init_ctx = (prompt_ctx.to(init.device, torch.float32) - residual).to(init.dtype).clone()
