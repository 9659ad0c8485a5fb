"""Stand-in of the DART design: zhoujiahuan1991/AAAI2024-DART at dbdfa2b, ``clip/my_clip_CSTP.py``
(``get_coop`` -> ``ClipTestTimeTuning``, ``--myclip --CSTP 1 --learnable_text a``), ``utils/ema.py``
(``Text_EMA``) and ``main.py``'s per-sample steps.

No prompt learner and no text-encoder module: ``init_text_prompts(classnames)`` cuts the embedded
``ctx_init.replace("CLS", name)`` texts (no final ".") into ``text_prompts_begin`` (SOS), a new Parameter
``text_prompts_a [C, n_ctx, D]`` (every row the template words), its plain clone ``text_prompts_a_init``,
``text_prompts_class`` (the name's first token) and ``text_prompts_end``; ``get_text_features()`` runs CLIP's
text tower over ``model.clip`` inline. Built with ``reinit-fix.diff`` applied (upstream's second
``init_text_prompts`` raises ``TypeError``); ``fixed_ctx_init=False`` keeps upstream's parsing, which leaves the
underscores in ("a _ photo _" contexts), ``ctx-init-fix.diff`` is ``True``. DART hard-codes ``"cuda"``; the
stand-in runs where its CLIP is.
"""

from __future__ import annotations

import copy
import math
import types
from typing import Any

import torch
from helpers import tokenize
from torch import nn


def dart_args(**changes: Any) -> types.SimpleNamespace:
    """main.py's parser values for the README command (the flags the model reads)."""
    args = dict(
        CSTP=1,
        learnable_text="a",
        share_prompts=0,
        n_ctx=4,
        ctx_init="a_photo_of_a_CLS",
        image_prompts=True,
        prefix_tuning=True,
        image_prompt_layer=[1],
        reset_image_prompts=False,
        test_sets="A",
        arch="ViT-B/16",
    )
    args.update(changes)
    return types.SimpleNamespace(**args)


class DARTModel(nn.Module):
    """DART's ``ClipTestTimeTuning`` on the ``--myclip`` path."""

    def __init__(self, args: types.SimpleNamespace, clip_model: nn.Module, fixed_ctx_init: bool = True) -> None:
        super().__init__()
        self.clip = clip_model
        self.image_encoder = clip_model.visual
        self.logit_scale = clip_model.logit_scale.data
        self.args = args
        self.fixed_ctx_init = fixed_ctx_init
        width = clip_model.visual.conv1.out_channels  # upstream: 768 (1024 for ViT-L/14), hard-coded
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            prompts = torch.empty((1, len(args.image_prompt_layer), 2, width)).uniform_(-1, 1)
        self.image_prompts = nn.Parameter(prompts)

    @property
    def dtype(self) -> torch.dtype:
        return self.image_encoder.conv1.weight.dtype

    def reset(self) -> None:
        self.reset_Tclass_prompts()

    def reset_Tclass_prompts(self) -> None:
        if self.args.CSTP == 1 and self.args.learnable_text == "a":
            self.text_prompts_a.copy_(self.text_prompts_a_init)

    def init_text_prompts(self, classnames: list[str]) -> None:
        self.classnames = classnames
        ctx_init = self.args.ctx_init.replace("_", " ")
        ctx_init = (ctx_init if self.fixed_ctx_init else self.args.ctx_init).replace("-", " ")
        x = tokenize([ctx_init.replace("CLS", name) for name in classnames])
        p_len = self.args.n_ctx
        self.tokenized_text = x.detach().clone()
        self.text_prompts_token = x.detach().clone()
        x = self.clip.token_embedding(x).type(self.dtype)
        self.text_prompts_begin = x[:, 0, :].detach().clone().unsqueeze(1)
        self.text_prompts_a = nn.Parameter(x[:, 1 : p_len + 1, :].detach().clone())  # reinit-fix.diff
        self.text_prompts_a_init = x[:, 1 : p_len + 1, :].detach().clone()
        self.text_prompts_class = x[:, p_len + 1, :].detach().clone().unsqueeze(1)
        self.text_prompts_end = x[:, p_len + 2 :, :].detach().clone()

    def get_text_features(self) -> torch.Tensor:
        x = torch.cat((self.text_prompts_begin, self.text_prompts_a, self.text_prompts_class, self.text_prompts_end), 1)
        x = x + self.clip.positional_embedding.type(self.clip.dtype)
        x = self.clip.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.clip.ln_final(x).type(self.clip.dtype)
        return x[torch.arange(x.shape[0]), self.text_prompts_token.argmax(dim=-1)] @ self.clip.text_projection

    def inference(self, image: torch.Tensor) -> torch.Tensor:
        """Upstream adds the image prompts inside the vision blocks; the stand-in only needs the text side."""
        with torch.no_grad():
            x = self.image_encoder(image.type(self.dtype))
        x = x / x.norm(dim=-1, keepdim=True)
        text = self.get_text_features()
        text = text / text.norm(dim=1, keepdim=True)
        return self.logit_scale.exp() * x @ text.t()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.inference(image)


class TextEMA:
    """``utils.ema.Text_EMA``: the shadow is a clone of the rows at construction; ``update_one_weight``."""

    def __init__(self, name: str, param: torch.Tensor, decay: float = 0.99) -> None:
        self.decay = decay
        self.shadow = {name: param.data.clone()}

    def update_one_weight(self, name: str, param: torch.Tensor, pred_class: int, weight: float, h: float) -> None:
        new_decay = math.exp(-weight / h)
        self.shadow[name][pred_class] = (
            new_decay * self.shadow[name][pred_class] + (1 - new_decay) * param.data[pred_class]
        )

    def apply_shadow(self, name: str, param: torch.Tensor, w: float = 0.5) -> torch.Tensor:
        return (w * self.shadow[name] + (1.0 - w) * param.data).clone()


def get_dart(clip_model: nn.Module, classnames: list[str], fixed_ctx_init: bool = True, **changes: Any) -> DARTModel:
    """A fresh DART model on a private copy of ``clip_model`` after ``init_text_prompts(classnames)``."""
    model = DARTModel(dart_args(**changes), copy.deepcopy(clip_model), fixed_ctx_init=fixed_ctx_init)
    model.init_text_prompts(classnames)
    return model


COVERS = {"dart": get_dart}
