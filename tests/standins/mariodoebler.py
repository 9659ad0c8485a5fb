"""Layout stand-in of TPT on OpenCLIP in mariodoebler/test-time-adaptation at 8b2ed63, ``classification/``:
``models/custom_clip.py`` (``ClipTestTimePromptTuning``, ``PromptLearner``, ``TextEncoder``), ``methods/tpt.py``
(``TPT``, a ``TTAMethod``) and ``models/model.py`` ``get_model`` (where the line goes).

TPT's layout written for an OpenCLIP ``CLIP``: the text encoder holds OpenCLIP's ``transformer``,
``positional_embedding``, ``ln_final``, ``text_projection`` and ``attn_mask`` and calls
``transformer(x, attn_mask=attn_mask)`` in LND layout; the learner keeps ``class_names`` (not ``classnames``),
OpenCLIP's ``token_embedding`` as a submodule and its tokenizer. Their encoder is written for open-clip-torch
2.24.0 (pinned in their environment), whose text transformer takes LND input; with a newer open_clip (batch-first
transformer) the stand-in's encoder skips the two permutes, so that it computes what theirs does on 2.24.0. The TTA method deep-copies the model and
optimizer state at construction; ``reset()`` loads them back; ``forward`` calls ``model.reset()`` per sample.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def _open_clip() -> Any:
    import open_clip  # a test dependency; imported on use so that the other stand-ins never need it

    return open_clip


VISION = {"layers": 1, "width": 64, "patch_size": 16, "image_size": 32, "head_width": 32}
TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2}


def tiny_open_clip(seed: int = 0) -> nn.Module:
    """A random tiny OpenCLIP ``CLIP`` (embed 32, text 64 x 2), every parameter moved off its init."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _open_clip().model.CLIP(32, VISION, TEXT)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model.eval()


class OCTextEncoder(nn.Module):
    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.visual.conv1.weight.dtype
        self.attn_mask = clip_model.attn_mask

    def forward(self, prompts: torch.Tensor, tokenized_prompts: torch.Tensor) -> torch.Tensor:
        x = prompts + self.positional_embedding.type(self.dtype)
        if getattr(self.transformer, "batch_first", False):  # open_clip >= 2.26 takes NLD (see the module docstring)
            x = self.transformer(x, attn_mask=self.attn_mask)
        else:  # open-clip-torch 2.24.0, as their code is written: NLD -> LND -> NLD
            x = self.transformer(x.permute(1, 0, 2), attn_mask=self.attn_mask).permute(1, 0, 2)
        x = self.ln_final(x).type(self.dtype)
        return x[torch.arange(x.shape[0]), tokenized_prompts.argmax(dim=-1)] @ self.text_projection


class OCPromptLearner(nn.Module):
    def __init__(self, clip_model: nn.Module, class_names: list[str], ctx_init: str = "a_photo_of_a") -> None:
        super().__init__()
        self.learned_cls = False
        self.dtype = clip_model.visual.conv1.weight.dtype
        self.token_embedding = clip_model.token_embedding
        self.tokenize = _open_clip().get_tokenizer("ViT-B-16")
        ctx_init = ctx_init.replace("_", " ")
        self.n_ctx = len(ctx_init.split(" "))
        with torch.no_grad():
            embedding = self.token_embedding(self.tokenize(ctx_init)).type(self.dtype)
        ctx_vectors = embedding[0, 1 : 1 + self.n_ctx, :]
        self.prompt_prefix = ctx_init
        self.class_token_position = "end"
        self.ctx_init_state = ctx_vectors.detach().clone()
        self.ctx = nn.Parameter(ctx_vectors)
        self.reset_class_names(class_names)

    def reset(self) -> None:
        self.ctx.copy_(self.ctx_init_state)

    def reset_class_names(self, class_names: list[str]) -> None:
        class_names = [name.replace("_", " ") for name in class_names]
        with torch.no_grad():
            tokens = torch.cat([self.tokenize(f"{self.prompt_prefix} {name}.") for name in class_names])
            embedding = self.token_embedding(tokens).type(self.dtype)
        self.register_buffer("token_prefix", embedding[:, :1, :])
        self.register_buffer("token_suffix", embedding[:, 1 + self.n_ctx :, :])
        self.tokenized_prompts = tokens
        self.class_names = class_names
        self.n_cls = len(class_names)

    def forward(self) -> torch.Tensor:
        ctx = self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)


class ClipTestTimePromptTuning(nn.Module):
    def __init__(self, clip_model: nn.Module, class_names: list[str], **kw: Any) -> None:
        super().__init__()
        self.image_encoder = clip_model.visual
        self.text_encoder = OCTextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale.data
        self.prompt_learner = OCPromptLearner(clip_model, class_names, **kw)

    def reset(self) -> None:
        self.prompt_learner.reset()

    def get_text_features(self) -> torch.Tensor:
        feats = self.text_encoder(self.prompt_learner(), self.prompt_learner.tokenized_prompts)
        return feats / feats.norm(dim=-1, keepdim=True)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats = self.image_encoder(image)
        feats = feats / feats.norm(dim=-1, keepdim=True)
        return self.logit_scale.exp() * feats @ self.get_text_features().t()


class TPTMethod(nn.Module):
    """``methods/tpt.py`` ``TPT`` over ``TTAMethod``: frozen but the prompt learner's ctx, AdamW, deep copies of the
    model and optimizer state; ``reset()`` loads them back; ``forward(views)`` = ``model.reset()`` + a step."""

    def __init__(self, model: ClipTestTimePromptTuning, lr: float = 5e-3) -> None:
        super().__init__()
        self.model = model
        for name, param in model.named_parameters():  # configure_model
            param.requires_grad_("prompt_learner" in name and "token_embedding" not in name)
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr)
        self.model_state = copy.deepcopy(model.state_dict())
        self.optimizer_state = copy.deepcopy(self.optimizer.state_dict())

    def reset(self) -> None:
        self.model.load_state_dict(self.model_state, strict=True)
        self.optimizer.load_state_dict(self.optimizer_state)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        self.model.reset()  # upstream calls it without no_grad (their loop runs under no_grad)
        with torch.enable_grad():
            probs = self.model(views).softmax(-1).mean(0)
            loss = -(probs * probs.log()).sum()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        with torch.no_grad():
            return self.model(views[:1])


def get_model(class_names: list[str], clip_model: nn.Module | None = None, **kw: Any) -> ClipTestTimePromptTuning:
    """``models/model.py`` ``get_model`` for ``MODEL.ADAPTATION: tpt``: OpenCLIP model + the wrapper."""
    return ClipTestTimePromptTuning(
        tiny_open_clip() if clip_model is None else copy.deepcopy(clip_model), class_names, **kw
    )
