"""Layout stand-in of TTA-VLM: TomSheng21/tta-vlm at bcc735f, ``clip/custom_clip.py`` (``get_coop`` ->
``ClipTestTimeTuning`` with ``TOKEN_LENGTH = 30``; ``get_coop_dynamic`` -> DynaPrompt's learner), the trainers of
``instance_method/{tpt,ctpt,rtpt,rlcf}.py`` and ``online_method/dynaprompt.py``.

TPT's layout with a 30-position model: prompts tokenized to 30 tokens, ``text_encoder.positional_embedding =
clip.positional_embedding[:30]`` (a plain tensor), every block's causal mask sliced to 30 x 30, while the CLIP
weights keep 77 positions. The script never freezes the CLIP weights. A trainer object per method:
``prepare_model_and_optimization`` (AdamW over ``prompt_learner.parameters()``, a copy of its state),
``pre_adaptation`` (``model.reset()`` + the state), ``adaptation_process`` (the steps). Online DynaPrompt: 10 zero
residual prompts ``ctx [10, n_ctx, D]`` + ``init_ctx``, never reset between samples; a used-up prompt is
re-initialised by ``ctx[i] * 0``; ``reset_classnames`` is ``assert False``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from fpp_init.models.clip import import_clip

from ._common import set_class_prompts
from .dynaprompt import DynaPromptLearner
from .tpt import ClipTestTimeTuning, PromptLearner

TOKEN_LENGTH = 30


def tokenize30(texts: list[str]) -> torch.Tensor:
    return import_clip().tokenize(texts, context_length=TOKEN_LENGTH)


def shortened(clip_model: nn.Module) -> nn.Module:
    """A private copy whose blocks keep a 30 x 30 causal mask beside 77 positional embeddings (TTA-VLM's model.py)."""
    clip_model = copy.deepcopy(clip_model)
    for block in clip_model.transformer.resblocks:
        block.attn_mask = block.attn_mask[:TOKEN_LENGTH, :TOKEN_LENGTH]
    return clip_model


class TextEncoder30(nn.Module):
    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding[:TOKEN_LENGTH]
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype

    def forward(self, prompts: torch.Tensor, tokenized_prompts: torch.Tensor) -> torch.Tensor:
        if prompts.dim() > 3:  # TextEncoder_Dynamic: [num_p, C, L, D]
            tokenized_prompts = (
                tokenized_prompts.unsqueeze(0).repeat(prompts.shape[0], 1, 1).view(-1, prompts.shape[-2])
            )
        x = prompts.reshape(-1, prompts.shape[-2], prompts.shape[-1]) + self.positional_embedding.type(self.dtype)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x).type(self.dtype)
        return x[torch.arange(x.shape[0]), tokenized_prompts.argmax(dim=-1)] @ self.text_projection


class PromptLearner30(PromptLearner):
    def _embed(self, classnames: list[str], register: bool = False) -> None:
        names = [n.replace("_", " ") for n in classnames]
        texts = [f"{self.prompt_prefix} {n}." for n in names]
        set_class_prompts(
            self, self._load(), texts, 1, 1 + self.n_ctx, register=register, dtype=self.dtype, tokenizer=tokenize30
        )
        self.n_cls = len(names)
        self.classnames = names


class DynamicLearner30(DynaPromptLearner):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.ctx_order = list(range(self.num_p))
        self.ctx_use = [0] * self.num_p

    def _embed(self, classnames: list[str], register: bool = False) -> None:
        names = [n.replace("_", " ") for n in classnames]
        texts = [f"{self.prompt_prefix} {n}." for n in names]
        start, end = 1 + self.n_ctx0 - self.n_ctx, 1 + self.n_ctx0
        # always buffers, whatever ``register`` says
        set_class_prompts(self, self._load(), texts, start, end, register=True, dtype=self.dtype, tokenizer=tokenize30)
        self.n_cls = len(names)
        self.classnames = names

    def reset_classnames(self, classnames: list[str], arch: str) -> None:
        raise AssertionError  # upstream: assert False


def get_coop(clip_model: nn.Module, classnames: list[str], **kw: Any) -> ClipTestTimeTuning:
    """``get_coop(clip_arch, classnames, device, n_ctx, ctx_init)``: class names, not a set id."""
    return ClipTestTimeTuning(shortened(clip_model), classnames, encoder=TextEncoder30, learner=PromptLearner30, **kw)


def get_coop_dynamic(clip_model: nn.Module, classnames: list[str], num_p: int = 10, **kw: Any) -> ClipTestTimeTuning:
    return ClipTestTimeTuning(
        shortened(clip_model), classnames, encoder=TextEncoder30, learner=DynamicLearner30, num_p=num_p, **kw
    )


#: method -> (lr, weight decay, steps, C-TPT term): instance_method/*.py
METHODS = {
    "tpt": (5e-3, 0.0, 1, False),
    "ctpt": (5e-3, 0.0, 1, True),
    "rtpt": (5e-3, 0.0, 1, False),
    "rlcf": (7e-3, 5e-4, 3, False),
}


class InstanceTrainer:
    """``instance_method/<method>.py``: the trainer object ``instance_tta.py`` builds after the line."""

    def __init__(self, model: ClipTestTimeTuning, method: str) -> None:
        self.model, self.method = model, method
        self.lr, self.wd, self.steps, self.ctpt = METHODS[method]

    def prepare_model_and_optimization(self) -> None:
        self.optimizer = torch.optim.AdamW(self.model.prompt_learner.parameters(), self.lr, weight_decay=self.wd)
        self.optim_state = copy.deepcopy(self.optimizer.state_dict())

    def pre_adaptation(self) -> None:
        with torch.no_grad():
            self.model.reset()
        self.optimizer.load_state_dict(self.optim_state)

    def adaptation_process(self, image_features: torch.Tensor) -> torch.Tensor:
        for _ in range(self.steps):
            text = self.model.get_text_features()
            probs = (self.model.logit_scale.exp() * image_features @ text.t()).softmax(-1)
            if self.method == "rtpt":
                loss = -(probs * probs.log()).sum(-1).mean()
            else:
                avg = probs.mean(0)
                loss = -(avg * avg.log()).sum()
            if self.ctpt:  # C-TPT: -lambda * mean distance of the text features to their centroid
                loss = loss - 50.0 * (text - text.mean(0)).norm(dim=-1).mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        with torch.no_grad():
            return image_features[:1] @ self.model.get_text_features().t()


class DynaPromptTrainer:
    """``online_method/dynaprompt.py`` ``DynaPrompt(model, device, num_p)`` (with dynaprompt-fix.diff)."""

    def __init__(self, model: ClipTestTimeTuning, lr: float = 5e-3) -> None:
        self.model = model
        self.optimizer = torch.optim.AdamW(model.prompt_learner.parameters(), lr)

    def reinitialise_oldest(self) -> int:
        """When every prompt was used once, the least recently used one is set to ``ctx[i] * 0``."""
        pl = self.model.prompt_learner
        i = pl.ctx_order[0]
        pl.ctx_use[i] = 0
        with torch.no_grad():
            pl.ctx[i] = pl.ctx[i] * 0
        return i

    def adaptation_process(self, image_features: torch.Tensor, i: int) -> None:
        """One online step tuning prompt ``i`` (the others get no gradient)."""
        pl = self.model.prompt_learner
        prompts = pl()[i]
        text = self.model.text_encoder(prompts, pl.tokenized_prompts)
        text = text / text.norm(dim=-1, keepdim=True)
        avg = (self.model.logit_scale.exp() * image_features @ text.t()).softmax(-1).mean(0)
        self.optimizer.zero_grad()
        (-(avg * avg.log()).sum()).backward()
        self.optimizer.step()
        pl.ctx_order.remove(i)
        pl.ctx_order.append(i)
        pl.ctx_use[i] += 1
