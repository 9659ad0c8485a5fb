"""Stand-in of ZERO's MaPLe path: FarinaMatteo/zero at c609f7c, ``maple_clip/maple.py`` (``CustomCLIP``,
``MultiModalPromptLearner``, ``TextEncoder``), ``maple_clip/model.py`` (``ResidualAttentionBlock_MaPLe``, text
side) and ``ttas/zero.py`` (``Zero``: frozen, ``no_grad``, ``z_txt`` cached at the first sample).

What differs from PromptAlign's MaPLe: the learner has no ``ctx_init_state``, no ``tokenized_prompts`` and no
``reset()``; ``token_prefix`` / ``token_suffix`` / ``CustomCLIP.tokenized_prompts`` appear only with
``CustomCLIP.reset_classnames`` (which also deletes the cached ``text_features``); the text blocks insert each
deep prompt as ``deep[i].half()``; the model is fp16 (``convert_weights``) while the deep text prompts stay
fp32 Parameters. Upstream hard-codes widths 512 / 768 (ViT-B/16); here they are the tiny model's.
``half=False`` gives the fp32 twin the harness judges exactness on (the CPU of torch < 2.1 has no fp16
matmul).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from fpp_init.models.clip import import_clip

from ._common import embed, word_embeddings
from .maple import MaPLeBlock, MaPLeTextEncoder, MaPLeTransformer


class ZeroBlock(MaPLeBlock):
    """Text side of ZERO's ``ResidualAttentionBlock_MaPLe``: blocks after the first replace rows ``1..n_ctx``
    by the next deep prompt, rounded with ``.half()`` (maple_clip/model.py l.323). The attributes are
    PromptAlign's (``standins.maple.MaPLeBlock``); only ``forward`` differs."""

    def forward(self, inputs: list[Any]) -> list[Any]:
        x, deeper, counter = inputs
        if not self.first_layer and len(deeper) > 0 and not counter > len(deeper) - 1:
            textual_context = deeper[counter].expand(x.shape[1], -1, -1).permute(1, 0, 2).half()
            x = torch.cat([x[:1], textual_context, x[1 + self.compound_prompt_nctx :]], dim=0)
            counter += 1
        mask = self.attn_mask.to(dtype=x.dtype, device=x.device)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        x = x + self.mlp(self.ln_2(x))
        return [x, deeper, counter]


class ZeroTransformer(MaPLeTransformer):
    """``standins.maple.MaPLeTransformer`` (the same code) over ``ZeroBlock``s."""

    def __init__(self, blocks: nn.Module, n_ctx: int) -> None:
        super().__init__(blocks, n_ctx, block=ZeroBlock)


class ZeroTextEncoder(MaPLeTextEncoder):
    """``forward(prompts, tokenized_prompts, compound_prompts_deeper_text)`` -> unnormalised features
    (``standins.maple.MaPLeTextEncoder``, the same code, over a ``ZeroTransformer``)."""

    def __init__(self, clip_model: nn.Module, n_ctx: int) -> None:
        super().__init__(clip_model, n_ctx, transformer=ZeroTransformer)


class ZeroPromptLearner(nn.Module):
    """ZERO's ``MultiModalPromptLearner``: ``ctx`` (in the model's dtype), ``proj``, fp32 deep text prompts
    and their projections; no reset state, no token buffers until ``CustomCLIP.reset_classnames``."""

    def __init__(self, n_ctx: int, ctx_init: str, prompt_depth: int, clip_model: nn.Module) -> None:
        super().__init__()
        dtype = clip_model.dtype
        ctx_dim = clip_model.ln_final.weight.shape[0]
        vis_dim = clip_model.visual.conv1.out_channels
        self.compound_prompts_depth = prompt_depth
        ctx_init = ctx_init.replace("_", " ")
        self.prompt_prefix = ctx_init
        self.proj = nn.Linear(ctx_dim, vis_dim).to(dtype)
        self.ctx = nn.Parameter(word_embeddings(clip_model, ctx_init, n_ctx, dtype).clone())
        self.compound_prompts_text = nn.ParameterList(
            [nn.Parameter(torch.randn(n_ctx, ctx_dim) * 0.02) for _ in range(prompt_depth - 1)]
        )
        self.compound_prompt_projections = nn.ModuleList([nn.Linear(ctx_dim, vis_dim) for _ in range(prompt_depth - 1)])

    def forward(self) -> tuple[torch.Tensor, torch.Tensor, nn.ParameterList, list[torch.Tensor]]:
        ctx = self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        prompts = torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)
        visual_deep = [layer(self.compound_prompts_text[i]) for i, layer in enumerate(self.compound_prompt_projections)]
        return prompts, self.proj(self.ctx), self.compound_prompts_text, visual_deep


class ZeroCustomCLIP(nn.Module):
    """ZERO's ``maple_clip.maple.CustomCLIP``: the object ``tta_module.model`` is on the ``--maple`` path."""

    def __init__(
        self,
        clip_model: nn.Module,
        n_ctx: int = 2,
        ctx_init: str = "a_photo_of_a",
        prompt_depth: int = 3,
        cache_text_features: bool = True,
    ) -> None:
        super().__init__()
        self.n_ctx = n_ctx
        self.freeze_text = self.freeze_vision = True
        self.cache_text_features = cache_text_features
        self.prompt_learner = ZeroPromptLearner(n_ctx, ctx_init, prompt_depth, clip_model)
        self.token_embedding = clip_model.token_embedding
        self.image_encoder = clip_model.visual  # upstream's takes (image, shared_ctx, deep visual prompts)
        self.text_encoder = ZeroTextEncoder(clip_model, n_ctx)
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_model.dtype  # a plain attribute, as upstream

    @property
    def temp(self) -> torch.Tensor:
        return 1 / self.logit_scale.exp()

    def reset_classnames(self, classnames: list[str], *args: Any) -> None:
        classnames = [name.replace("_", " ") for name in classnames]
        texts = [f"{self.prompt_learner.prompt_prefix} {name}." for name in classnames]
        tokenized_prompts, embedding = embed(self, texts, self.dtype)  # self.token_embedding
        self.prompt_learner.register_buffer("token_prefix", embedding[:, :1, :])  # SOS
        self.prompt_learner.register_buffer("token_suffix", embedding[:, 1 + self.n_ctx :, :])  # "of a" CLS, EOS
        self.prompt_learner.n_cls = len(classnames)
        self.tokenized_prompts = tokenized_prompts
        if hasattr(self, "text_features"):
            delattr(self, "text_features")

    def get_text_features(self) -> torch.Tensor:
        prompts, _, deep_text, _ = self.prompt_learner()
        feats = self.text_encoder(prompts, self.tokenized_prompts, deep_text)
        return feats / feats.norm(dim=-1, keepdim=True)

    def get_image_features(self, image: torch.Tensor) -> torch.Tensor:
        feats = self.image_encoder(image.type(self.dtype))
        return feats / feats.norm(dim=-1, keepdim=True)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if self.cache_text_features:
                if not hasattr(self, "text_features") or self.text_features is None:
                    self.text_features = self.get_text_features()
                text_features = self.text_features
            else:
                text_features = self.get_text_features()
            image_features = self.get_image_features(image)
        return self.logit_scale.exp() * image_features @ text_features.t()


class ZeroTTA(nn.Module):
    """``ttas.zero.Zero``: every parameter frozen, ``zero(views)`` under ``no_grad`` caching ``z_txt`` once."""

    def __init__(self, model: ZeroCustomCLIP, gamma: float = 0.3) -> None:
        super().__init__()
        self.model = model
        self.gamma = gamma
        for param in self.model.parameters():
            param.requires_grad_(False)

    def prepare_for_training(self, classnames: list[str]) -> None:
        """Upstream takes a set id and looks its class names up; the stand-in takes the names."""
        classnames = [name.replace("_", " ") for name in classnames]
        self.model.reset_classnames(classnames)
        self.classnames = classnames

    @torch.no_grad()
    def zero(self, views: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "z_txt"):
            z_txt = self.z_txt
        else:
            z_txt = self.model.get_text_features()
            self.z_txt = z_txt
        z_img = self.model.get_image_features(views)
        logits = z_img @ z_txt.t()
        probs = (logits / self.model.temp).softmax(1)
        keep = probs.max(1).values.argsort(descending=True)[: max(1, int(views.shape[0] * self.gamma))]
        zero_temp = torch.finfo(logits.dtype).eps
        return (logits[keep] / zero_temp).softmax(1).sum(0).unsqueeze(0)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        return self.zero(views)


def build_zero(clip_model: nn.Module, half: bool = False, **kw: Any) -> ZeroCustomCLIP:
    """A fresh ``CustomCLIP`` on a private copy of ``clip_model`` (fp16 as upstream with ``half=True``), before
    ``reset_classnames``; random parts from seed 0."""
    clip_model = copy.deepcopy(clip_model)
    if half:
        import_clip().model.convert_weights(clip_model)  # what MaPLe's build_model does
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return ZeroCustomCLIP(clip_model, **kw)


def get_zero(clip_model: nn.Module, classnames: list[str], half: bool = False, **kw: Any) -> ZeroCustomCLIP:
    """The ``CustomCLIP`` as ``tta_module.prepare_for_training`` leaves it (class set built)."""
    model = build_zero(clip_model, half=half, **kw)
    model.reset_classnames(classnames)
    return model


def get_zero_tta(clip_model: nn.Module, classnames: list[str], half: bool = False, **kw: Any) -> ZeroTTA:
    """The ``Zero`` TTA module after ``prepare_for_training``."""
    tta = ZeroTTA(build_zero(clip_model, half=half, **kw))
    tta.prepare_for_training(classnames)
    return tta


COVERS = {"zero_maple": get_zero}
