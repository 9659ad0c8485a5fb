"""Stand-ins of TAPT's trainers: xinwong/TAPT at 14d8d0e.

- ``TAPTVLJ`` (``trainers/adv_vlj.py``): PromptAlign's MaPLe layout (``standins.maple``) with TAPT's widths: deep
  text prompts ``D`` wide, ``proj`` to the vision width, ``PROMPT_DEPTH 9`` (8 deep prompts, more than the text
  blocks that use them), an image normalisation in ``forward``; the trainer's ``load_model`` loads the trained
  prompt-learner state into ``ctx`` etc. only (``ctx_init_state`` stays the construction-time words), ``tapt()``
  starts with ``set_prompt_inits()``. Served by the MaPLe design.
- ``TAPTVLI`` (``trainers/adv_vli.py`` ``VLPromptLearner``): ``ctx``, prompt buffers, a two-argument text
  encoder, but ``ctx_init_state`` only after ``set_prompt_init_states()``. Refused.
- ``TAPTV`` (``trainers/adv_v.py``): no prompt learner; text features are ``FixedEmbeddings`` of hard prompts.
  Refused.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from helpers import load_trained, tokenize
from torch import nn

from ._common import set_class_prompts, word_embeddings
from .maple import CustomCLIP
from .tpt import TextEncoder

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


class TAPTVLJ(CustomCLIP):
    """``trainers/adv_vlj.py`` ``CustomCLIP``: PromptAlign's, plus the image normalisation."""

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
        return (image - mean) / std

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        image = self.normalize(image)
        feats = self.image_encoder(image.type(self.dtype))
        feats = feats / feats.norm(dim=-1, keepdim=True)
        return self.logit_scale.exp() * feats @ self.get_text_features().t()


class Trainer:
    """The parts of TAPT's Dassl trainer the line sits between: ``load_model`` and ``tapt``."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def load_model(self, seed: int = 1) -> None:
        load_trained(self.model, seed=seed)  # prompt_learner.* from the --model-dir checkpoint (strict=False)

    def tapt(self, images: torch.Tensor, steps: int = 2, lr: float = 5e-4) -> list[torch.Tensor]:
        """``set_prompt_inits()``, freeze all but the prompt learner, AdamW, then per sample ``reset()`` and an
        entropy step (TAPT adds a feature-distribution alignment; the stand-in needs only a step that moves ctx).
        Returns ctx right after each reset."""
        self.model.set_prompt_inits()
        for name, param in self.model.named_parameters():
            param.requires_grad_("prompt_learner" in name)
        optimizer = torch.optim.AdamW(self.model.prompt_learner.parameters(), lr)
        starts = []
        for _ in range(steps):
            with torch.no_grad():
                self.model.reset()
            starts.append(self.model.prompt_learner.ctx.detach().clone())
            probs = self.model(images).softmax(-1)
            (-(probs * probs.log()).sum(-1).mean()).backward()
            optimizer.step()
            optimizer.zero_grad()
        return starts


def get_tapt_vlj(clip_model: nn.Module, classnames: list[str], prompt_depth: int = 9, **kw: Any) -> TAPTVLJ:
    """A fresh TAPTVLJ model (random parts from seed 0) on a private copy of ``clip_model``."""
    clip_model = copy.deepcopy(clip_model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return TAPTVLJ(clip_model, classnames, prompt_depth=prompt_depth, **kw)


class VLPromptLearner(nn.Module):
    """``trainers/adv_vli.py`` ``VLPromptLearner``: no ``ctx_init_state`` until ``set_prompt_init_states()``."""

    def __init__(self, clip_model: nn.Module, classnames: list[str], n_ctx: int = 2, ctx_init: str = "a photo of a"):
        super().__init__()
        self.learned_cls = False
        self.ctx = nn.Parameter(word_embeddings(clip_model, ctx_init, n_ctx).clone())  # no dtype cast
        texts = [f"{ctx_init} {n.replace('_', ' ')}." for n in classnames]
        self.n_cls, self.n_ctx = len(classnames), n_ctx
        set_class_prompts(self, clip_model, texts, 1, 1 + n_ctx, register=True)

    def reset(self) -> None:
        self.ctx.copy_(self.ctx_init_state)

    def set_prompt_init_states(self) -> None:
        self.ctx_init_state = self.ctx.detach().clone()


class TAPTVLI(nn.Module):
    def __init__(self, clip_model: nn.Module, classnames: list[str]) -> None:
        super().__init__()
        self.prompt_learner = VLPromptLearner(clip_model, classnames)
        self.tokenized_prompts = self.prompt_learner.tokenized_prompts
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)  # upstream's blocks hold IVLP text prompts (VPT_shallow)

    def set_prompt_inits(self) -> None:
        self.prompt_learner.set_prompt_init_states()


class FixedEmbeddings:
    """``trainers/adv_v.py`` ``FixedEmbeddings``: text features of "a photo of a <class>." computed once."""

    def __init__(self, clip_model: nn.Module, classnames: list[str]) -> None:
        with torch.no_grad():
            self.fixed_embeddings = clip_model.encode_text(tokenize([f"a photo of a {n}." for n in classnames]))

    def return_fixed_embeddings(self) -> torch.Tensor:
        return self.fixed_embeddings


class TAPTV(nn.Module):
    def __init__(self, clip_model: nn.Module, classnames: list[str]) -> None:
        super().__init__()
        self.embeddings = FixedEmbeddings(clip_model, classnames)
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)


def get_tapt_vli(clip_model: nn.Module, classnames: list[str]) -> TAPTVLI:
    return TAPTVLI(copy.deepcopy(clip_model), classnames)


def get_tapt_v(clip_model: nn.Module, classnames: list[str]) -> TAPTV:
    return TAPTV(copy.deepcopy(clip_model), classnames)


#: the refused layouts (TAPTVLJ is the MaPLe design, covered by standins.maple)
COVERS = {"tapt_vli": get_tapt_vli, "tapt_v": get_tapt_v}
