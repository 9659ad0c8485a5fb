"""Stand-in of TCA's attribute prompts: rhebbalaguppe/TCA_PromptWithoutPanic at b9645fd, ``TCA/clip/custom_clip.py``
(``get_coop`` -> ``ClipTestTimeTuning``, ``PromptLearner``; TPT's layout with ``num_attributes`` rows per class).

The prompts are ``"<template> <attribute> <class>."`` for the first ``num_attributes`` attributes of each class
(``attributes``: class name -> list, as ``TCA/Attributes/<Dataset>_2_V.json`` split), class-major: ``token_prefix``,
``token_suffix`` and ``tokenized_prompts`` have ``C * A`` rows, while ``classnames`` has ``C`` names and
``n_cls = C``. ``inference()`` groups the text features by ``num_attributes``. With ``multi_gpu`` (and, upstream,
more than one GPU) the text and image encoders are ``nn.DataParallel`` wrappers.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from helpers import n_words
from torch import nn

from ._common import set_class_prompts, word_embeddings
from .tpt import TextEncoder

#: stand-in attribute words (TCA reads them from its JSON files: "red striped", ...)
WORDS = ["red", "striped", "small", "shiny", "wooden", "round"]


def make_attributes(classnames: list[str], per_class: int = 3) -> dict[str, list[str]]:
    names = [n.replace("_", " ") for n in classnames]
    return {n: [WORDS[(i + j) % len(WORDS)] for j in range(per_class)] for i, n in enumerate(names)}


class TCAPromptLearner(nn.Module):
    def __init__(
        self,
        clip_model: nn.Module,
        classnames: list[str],
        num_attributes: int,
        attributes: dict[str, list[str]],
        ctx_init: str = "a_photo_of_a",
    ) -> None:
        super().__init__()
        self.dtype = clip_model.dtype
        self.learned_cls = False
        self.num_attributes = num_attributes
        self.attributes = attributes
        self._load = lambda: clip_model  # upstream re-loads CLIP in reset_classnames
        ctx_init = ctx_init.replace("_", " ")
        self.n_ctx = n_words(ctx_init)
        ctx_vectors = word_embeddings(clip_model, ctx_init, self.n_ctx, self.dtype)
        self.prompt_prefix = ctx_init
        self.ctx_init_state = ctx_vectors.detach().clone()
        self.ctx = nn.Parameter(ctx_vectors.clone())
        self.class_token_position = "end"
        self._embed(classnames, register=True)

    def prompts(self, names: list[str]) -> list[str]:
        if self.num_attributes > 0:
            return [
                f"{self.prompt_prefix} {attribute} {name}."
                for name in names
                for attribute in self.attributes[name][: self.num_attributes]
            ]
        return [f"{self.prompt_prefix} {name}." for name in names]

    def _embed(self, classnames: list[str], register: bool = False) -> None:
        names = [n.replace("_", " ") for n in classnames]
        texts = self.prompts(names)
        set_class_prompts(self, self._load(), texts, 1, 1 + self.n_ctx, register=register, dtype=self.dtype)
        self.n_cls = len(names)
        self.classnames = names

    def reset(self) -> None:
        self.ctx.copy_(self.ctx_init_state)

    def reset_classnames(self, classnames: list[str], arch: str) -> None:
        self._embed(classnames)

    def forward(self) -> torch.Tensor:
        ctx = self.ctx.unsqueeze(0).expand(self.token_prefix.shape[0], -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=-2)


class TCAModel(nn.Module):
    """TCA's ``ClipTestTimeTuning``; the loop sets ``l2_norm_cal_tca`` / ``l2_norm_cal_ctpt`` before inference."""

    def __init__(
        self,
        clip_model: nn.Module,
        classnames: list[str],
        num_attributes: int,
        attributes: dict[str, list[str]],
        multi_gpu: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__()
        self.num_attributes = num_attributes
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        if multi_gpu:  # upstream: only with torch.cuda.device_count() > 1; on the CPU the wrapper calls the module
            self.image_encoder = nn.DataParallel(self.image_encoder)
            self.text_encoder = nn.DataParallel(self.text_encoder)
        self.logit_scale = clip_model.logit_scale.data
        self.prompt_learner = TCAPromptLearner(clip_model, classnames, num_attributes, attributes, **kw)

    def reset(self) -> None:
        self.prompt_learner.reset()

    def reset_classnames(self, classnames: list[str], arch: str) -> None:
        self.prompt_learner.reset_classnames(classnames, arch)

    def get_text_features(self) -> torch.Tensor:
        feats = self.text_encoder(self.prompt_learner(), self.prompt_learner.tokenized_prompts)
        return feats / feats.norm(dim=-1, keepdim=True)

    def inference(self, image_features: torch.Tensor) -> torch.Tensor:
        """Class probabilities from (already encoded, normalised) image features, TCA's ``l2_norm_cal_tca`` path:
        the exponentiated logits of each class's attribute prompts summed, normalised over classes."""
        text = self.get_text_features()
        attribute_features = text.reshape(-1, self.num_attributes, text.shape[1])
        attribute_mean = attribute_features.mean(dim=1)
        self.l2_norm_mean_training = torch.linalg.norm(attribute_mean - attribute_mean.mean(0), dim=-1).mean()
        distance = attribute_features - attribute_mean[:, None]
        self.l2_norm_attribute_mean_training = torch.linalg.norm(distance, dim=-1).mean(dim=-1)
        logits = self.logit_scale.exp() * image_features @ text.t()
        logits = torch.exp(logits.reshape(logits.shape[0], -1, self.num_attributes)).sum(-1)
        return logits / logits.sum(dim=1, keepdim=True)


def get_tca(
    clip_model: nn.Module,
    classnames: list[str],
    num_attributes: int = 2,
    attributes: dict[str, list[str]] | None = None,
    **kw: Any,
) -> TCAModel:
    """A fresh TCA stand-in on a private copy of ``clip_model`` (attributes made up unless given)."""
    attributes = make_attributes(classnames) if attributes is None else attributes
    return TCAModel(copy.deepcopy(clip_model), classnames, num_attributes, attributes, **kw)


COVERS = {"tca": get_tca}
