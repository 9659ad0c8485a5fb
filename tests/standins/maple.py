"""Stand-in of the MaPLe design as PromptAlign runs it: jameelhassan/PromptAlign at 9290564,
``trainers/prompt_align.py`` (``CustomCLIP``, ``MultiModalPromptLearner``, ``TextEncoder``) and
``clip/model.py`` (``ResidualAttentionBlock_MaPLe``, text side)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ._common import set_class_prompts, word_embeddings


class MaPLeBlock(nn.Module):
    """The text side of ``ResidualAttentionBlock_MaPLe``: ``forward([x, deeper_prompts, counter])``;
    every layer after the first replaces positions ``1..1+n_ctx`` by the next deeper prompt."""

    def __init__(self, block: nn.Module, n_ctx: int, first_layer: bool) -> None:
        super().__init__()
        self.attn, self.ln_1, self.mlp, self.ln_2 = block.attn, block.ln_1, block.mlp, block.ln_2
        self.attn_mask = block.attn_mask
        self.compound_prompt_nctx = n_ctx
        self.first_layer = first_layer

    def forward(self, inputs: list[Any]) -> list[Any]:
        x, deeper, counter = inputs
        if not self.first_layer and len(deeper) > 0 and not counter > len(deeper) - 1:
            ctx = deeper[counter].expand(x.shape[1], -1, -1).permute(1, 0, 2)
            x = torch.cat([x[:1], ctx.to(x.dtype), x[1 + self.compound_prompt_nctx :]], dim=0)
            counter += 1
        mask = self.attn_mask.to(dtype=x.dtype, device=x.device)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        x = x + self.mlp(self.ln_2(x))
        return [x, deeper, counter]


class MaPLeTransformer(nn.Module):
    """PromptAlign's ``clip.model.Transformer`` with ``ResidualAttentionBlock_MaPLe`` blocks in ``resblocks``."""

    def __init__(self, blocks: nn.Module, n_ctx: int, block: type[nn.Module] = MaPLeBlock) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(*[block(b, n_ctx, i == 0) for i, b in enumerate(blocks)])

    def forward(self, inputs: list[Any]) -> list[Any]:
        return self.resblocks(inputs)


class MaPLeTextEncoder(nn.Module):
    """PromptAlign's ``TextEncoder``: ``forward(prompts, tokenized_prompts, compound_prompts_deeper_text)``."""

    def __init__(self, clip_model: nn.Module, n_ctx: int, transformer: type[nn.Module] = MaPLeTransformer) -> None:
        super().__init__()
        self.transformer = transformer(clip_model.transformer.resblocks, n_ctx)
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype

    def forward(
        self, prompts: torch.Tensor, tokenized_prompts: torch.Tensor, compound_prompts_deeper_text: Any
    ) -> torch.Tensor:
        x = (prompts + self.positional_embedding.type(self.dtype)).permute(1, 0, 2)
        x = self.transformer([x, compound_prompts_deeper_text, 0])[0].permute(1, 0, 2)
        x = self.ln_final(x).type(self.dtype)
        return x[torch.arange(x.shape[0]), tokenized_prompts.argmax(dim=-1)] @ self.text_projection


class MultiModalPromptLearner(nn.Module):
    """PromptAlign's learner: ``ctx`` ``[n_ctx, D]`` (the first ``n_ctx`` template words, default 2),
    ``proj`` (ctx -> image branch), deeper text prompts ``compound_prompts_text`` and their
    projections, ``*_init_state`` copies, ``reset`` and ``set_prompt_init_states``.

    Upstream hard-codes the deeper prompts' width 512 and ``proj``'s 768 (ViT-B/16); here they
    are the tiny model's widths. Upstream's ``reset_classnames`` reads ``self.prompt_prefix``,
    which it never sets (PromptAlign runs one dataset per run and never calls it); the stand-in
    keeps the template in ``_template`` so that the per-dataset hook can be tested.
    """

    def __init__(
        self,
        clip_model: nn.Module,
        classnames: list[str],
        n_ctx: int = 2,
        ctx_init: str = "a photo of a",
        prompt_depth: int = 3,
    ) -> None:
        super().__init__()
        self.learned_cls = False
        self.dtype = clip_model.dtype
        self.ctx_dim = ctx_dim = clip_model.ln_final.weight.shape[0]
        vis_dim = clip_model.visual.conv1.out_channels
        self.compound_prompts_depth = prompt_depth
        self._load = lambda: clip_model
        if ctx_init and n_ctx <= 4:
            ctx_init = ctx_init.replace("_", " ")
            ctx_vectors = word_embeddings(clip_model, ctx_init, n_ctx, self.dtype)
            prompt_prefix = ctx_init
        else:
            ctx_vectors = torch.randn(n_ctx, ctx_dim) * 0.02
            prompt_prefix = " ".join(["X"] * n_ctx)
        self._template = prompt_prefix
        self.proj = nn.Linear(ctx_dim, vis_dim)
        self.ctx = nn.Parameter(ctx_vectors.clone())
        self.proj_weight_init_state = self.proj.weight.detach().clone()
        self.proj_bias_init_state = self.proj.bias.detach().clone()
        self.ctx_init_state = ctx_vectors.detach().clone()
        self.compound_prompts_text = nn.ParameterList(
            [nn.Parameter(torch.randn(n_ctx, ctx_dim) * 0.02) for _ in range(prompt_depth - 1)]
        )
        self.compound_prompts_text_init_state = [p.detach().clone() for p in self.compound_prompts_text]
        self.compound_prompt_projections = nn.ModuleList([nn.Linear(ctx_dim, vis_dim) for _ in range(prompt_depth - 1)])
        self.compound_prompt_projections_init_state = [
            (m.weight.detach().clone(), m.bias.detach().clone()) for m in self.compound_prompt_projections
        ]
        self.n_ctx = n_ctx
        self._embed(classnames, register=True)

    def _embed(self, classnames: list[str], register: bool = False) -> None:
        names = [n.replace("_", " ") for n in classnames]
        texts = [f"{self._template} {n}." for n in names]
        # token_prefix: SOS; token_suffix: the rest of the template, CLS, EOS
        set_class_prompts(self, self._load(), texts, 1, 1 + self.n_ctx, register=register, dtype=self.dtype)
        self.n_cls = len(names)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor, nn.ParameterList, list[torch.Tensor]]:
        ctx = self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        prompts = torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)
        visual_deep = [layer(self.compound_prompts_text[i]) for i, layer in enumerate(self.compound_prompt_projections)]
        return prompts, self.proj(self.ctx), self.compound_prompts_text, visual_deep

    def reset(self) -> None:
        self.ctx.copy_(self.ctx_init_state)
        with torch.no_grad():
            self.proj.weight.copy_(self.proj_weight_init_state)
            self.proj.bias.copy_(self.proj_bias_init_state)
            for i, p in enumerate(self.compound_prompts_text):
                p.copy_(self.compound_prompts_text_init_state[i])
            for i, m in enumerate(self.compound_prompt_projections):
                m.weight.copy_(self.compound_prompt_projections_init_state[i][0])
                m.bias.copy_(self.compound_prompt_projections_init_state[i][1])

    def reset_classnames(self, classnames: list[str], args: Any) -> None:
        self._embed(classnames)
        self.classnames = [n.replace("_", " ") for n in classnames]

    def set_prompt_init_states(self) -> None:
        self.ctx_init_state = self.ctx.detach().clone()
        self.proj_weight_init_state = self.proj.weight.detach().clone()
        self.proj_bias_init_state = self.proj.bias.detach().clone()
        self.compound_prompts_text_init_state = [p.detach().clone() for p in self.compound_prompts_text]
        self.compound_prompt_projections_init_state = [
            (m.weight.detach().clone(), m.bias.detach().clone()) for m in self.compound_prompt_projections
        ]


class CustomCLIP(nn.Module):
    """PromptAlign's ``CustomCLIP`` (``trainer.model``); ``trainer.tpt()`` first calls ``set_prompt_inits()``."""

    def __init__(self, clip_model: nn.Module, classnames: list[str], **kw: Any) -> None:
        super().__init__()
        self.prompt_learner = MultiModalPromptLearner(clip_model, classnames, **kw)
        self.tokenized_prompts = self.prompt_learner.tokenized_prompts
        self.image_encoder = clip_model.visual  # upstream's takes (image, shared_ctx, deep visual prompts)
        self.text_encoder = MaPLeTextEncoder(clip_model, self.prompt_learner.n_ctx)
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_model.dtype

    def get_text_features(self) -> torch.Tensor:
        prompts, _, deep_text, _ = self.prompt_learner()
        feats = self.text_encoder(prompts, self.tokenized_prompts, deep_text)
        return feats / feats.norm(dim=-1, keepdim=True)

    def reset(self) -> None:
        self.prompt_learner.reset()

    def reset_classnames(self, classnames: list[str], arch: Any) -> None:
        self.prompt_learner.reset_classnames(classnames, arch)
        self.tokenized_prompts = self.prompt_learner.tokenized_prompts

    def set_prompt_inits(self) -> None:
        self.prompt_learner.set_prompt_init_states()


def get_maple(clip_model: nn.Module, classnames: list[str], **kw: Any) -> CustomCLIP:
    """A fresh PromptAlign stand-in on a private copy of ``clip_model`` (random parts from seed 0)."""
    clip_model = copy.deepcopy(clip_model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return CustomCLIP(clip_model, classnames, **kw)


COVERS = {"maple": get_maple}
