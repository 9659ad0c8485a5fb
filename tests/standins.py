"""Stand-ins for the live models of TPT-family codebases, written from their documented interfaces.

Same attribute names, shapes, dtypes and methods as described in
``shared/docs/upstream-tpt-family.md`` (``get_coop`` -> ``ClipTestTimeTuning``), built on a
tiny clip-anytorch CLIP. The tests may import ``clip``; the adapters never do.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fpp_init.backbones.clip import import_clip


def tokenize(texts: list[str]) -> torch.Tensor:
    return import_clip().tokenize(texts)


def n_words(text: str) -> int:
    return len(text.split(" "))


# -- text encoders --------------------------------------------------------------------------
class TextEncoder(nn.Module):
    """``text_encoder(prompts, tokenized_prompts)`` -> unnormalised features (TPT, C-TPT...)."""

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype

    def forward(self, prompts: torch.Tensor, tokenized_prompts: torch.Tensor) -> torch.Tensor:
        x = prompts + self.positional_embedding.type(self.dtype)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x).type(self.dtype)
        return x[torch.arange(x.shape[0]), tokenized_prompts.argmax(dim=-1)] @ self.text_projection


class ScaledTextEncoder(TextEncoder):
    """Not plain CLIP maths (features doubled): the adapter must fall back to calling it."""

    def forward(self, prompts: torch.Tensor, tokenized_prompts: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(prompts, tokenized_prompts)


class AuxBlock(nn.Module):
    """A residual block returning ``(x, aux_outputs)`` (FPP / O-TPT vendored ``clip/model.py``)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.attn, self.ln_1, self.mlp, self.ln_2 = block.attn, block.ln_1, block.mlp, block.ln_2
        self.attn_mask = block.attn_mask

    def forward(self, x: torch.Tensor, aux_outputs: Any = None) -> tuple[torch.Tensor, Any]:
        mask = self.attn_mask.to(dtype=x.dtype, device=x.device)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=True, attn_mask=mask)[0]
        x = x + self.mlp(self.ln_2(x))
        return x, aux_outputs


class AuxTransformer(nn.Module):
    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.width, self.layers = transformer.width, transformer.layers
        self.resblocks = nn.Sequential(*[AuxBlock(b) for b in transformer.resblocks])

    def forward(self, x: torch.Tensor, aux_outputs: Any = None) -> tuple[torch.Tensor, Any]:
        for block in self.resblocks:
            x, aux_outputs = block(x, aux_outputs)
        return x, aux_outputs


class AuxTextEncoder(nn.Module):
    """``text_encoder(prompts, tokenized_prompts, aux_outputs)`` -> ``(features, aux_outputs)``."""

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.transformer = AuxTransformer(clip_model.transformer)
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype

    def forward(
        self, prompts: torch.Tensor, tokenized_prompts: torch.Tensor, aux_outputs: Any
    ) -> tuple[torch.Tensor, Any]:
        x = prompts + self.positional_embedding.type(self.dtype)
        x, aux_outputs = self.transformer(x.permute(1, 0, 2), aux_outputs)
        x = self.ln_final(x.permute(1, 0, 2)).type(self.dtype)
        x = x[torch.arange(x.shape[0]), tokenized_prompts.argmax(dim=-1)] @ self.text_projection
        return x, aux_outputs


# -- prompt learners ------------------------------------------------------------------------
class PromptLearner(nn.Module):
    """TPT's ``PromptLearner``: ``ctx`` fp32 Parameter, ``ctx_init_state``, prefix/suffix buffers."""

    def __init__(
        self,
        clip_model: nn.Module,
        classnames: list[str],
        n_ctx: int = 4,
        ctx_init: str | None = "a_photo_of_a",
        ctx_position: str = "end",
        learned_cls: bool = False,
    ) -> None:
        super().__init__()
        self.dtype = clip_model.dtype
        self.ctx_dim = clip_model.ln_final.weight.shape[0]
        self.learned_cls = learned_cls
        self._load = lambda: clip_model  # upstream re-loads CLIP in reset_classnames
        if ctx_init:
            ctx_init = ctx_init.replace("_", " ")
            if "[CLS]" in ctx_init:
                ctx_init = ctx_init.replace("[CLS] ", "")
                ctx_position = "middle"
            n_ctx = n_words(ctx_init)
            with torch.no_grad():
                emb = clip_model.token_embedding(tokenize([ctx_init])).type(self.dtype)
            ctx_vectors = emb[0, 1 : 1 + n_ctx, :]
            prompt_prefix = ctx_init
        else:
            ctx_vectors = torch.randn(n_ctx, self.ctx_dim, generator=torch.Generator().manual_seed(0)) * 0.02
            prompt_prefix = " ".join(["X"] * n_ctx)
        self.prompt_prefix = prompt_prefix
        self.ctx_init_state = ctx_vectors.detach().clone()
        self.ctx = nn.Parameter(ctx_vectors.clone())
        self.class_token_position = ctx_position
        self.n_ctx = n_ctx
        self._embed(classnames, register=True)

    def _embed(self, classnames: list[str], register: bool = False) -> None:
        names = [n.replace("_", " ") for n in classnames]
        tokens = tokenize([f"{self.prompt_prefix} {n}." for n in names])
        with torch.no_grad():
            emb = self._load().token_embedding(tokens).type(self.dtype)
        start = 1
        if register:
            self.register_buffer("token_prefix", emb[:, :start])
            self.register_buffer("token_suffix", emb[:, start + self.n_ctx :])
        else:
            self.token_prefix = emb[:, :start]
            self.token_suffix = emb[:, start + self.n_ctx :]
        self.tokenized_prompts = tokens
        self.n_cls = len(names)
        self.classnames = names

    def reset(self) -> None:
        self.ctx.copy_(self.ctx_init_state)

    def reset_classnames(self, classnames: list[str], arch: str) -> None:
        self._embed(classnames)

    def forward(self) -> torch.Tensor:
        ctx = self.ctx
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=-2)


class DynaPromptLearner(PromptLearner):
    """DynaPrompt's ``custom_clip_lessctx`` learner: zero residual ``ctx`` + plain tensor ``init_ctx``.

    ``init_ctx`` holds the embeddings of the last ``n_ctx`` template words; ``token_prefix``
    holds SOS plus the leading template words; ``ctx`` is ``[num_p, n_ctx, D]`` if ``num_p > 1``.
    """

    def __init__(self, clip_model: nn.Module, classnames: list[str], n_ctx: int = 4, num_p: int = 1, **kw: Any) -> None:
        nn.Module.__init__(self)
        self.dtype = clip_model.dtype
        self.ctx_dim = clip_model.ln_final.weight.shape[0]
        self.learned_cls = False
        self._load = lambda: clip_model
        ctx_init = kw.get("ctx_init", "a_photo_of_a").replace("_", " ")
        self.n_ctx0 = n_words(ctx_init)
        with torch.no_grad():
            emb = clip_model.token_embedding(tokenize([ctx_init])).type(self.dtype)
        self.init_ctx = emb[0, 1 + self.n_ctx0 - n_ctx : 1 + self.n_ctx0, :].clone()
        ctx_vectors = torch.zeros(n_ctx, self.ctx_dim, dtype=self.dtype)
        if num_p > 1:
            ctx_vectors = ctx_vectors.unsqueeze(0).repeat(num_p, 1, 1)
        self.num_p = num_p
        self.prompt_prefix = ctx_init
        self.ctx_init_state = ctx_vectors.detach().clone()
        self.ctx = nn.Parameter(ctx_vectors)
        self.class_token_position = "end"
        self.n_ctx = n_ctx
        self._embed(classnames, register=True)

    def _embed(self, classnames: list[str], register: bool = False) -> None:
        names = [n.replace("_", " ") for n in classnames]
        tokens = tokenize([f"{self.prompt_prefix} {n}." for n in names])
        with torch.no_grad():
            emb = self._load().token_embedding(tokens).type(self.dtype)
        start = 1 + self.n_ctx0 - self.n_ctx
        if register:
            self.register_buffer("token_prefix", emb[:, :start])
            self.register_buffer("token_suffix", emb[:, 1 + self.n_ctx0 :])
        else:
            self.token_prefix = emb[:, :start]
            self.token_suffix = emb[:, 1 + self.n_ctx0 :]
        self.tokenized_prompts = tokens
        self.n_cls = len(names)
        self.classnames = names

    def forward(self) -> torch.Tensor:
        ctx = self.ctx + self.init_ctx
        prefix, suffix = self.token_prefix, self.token_suffix
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        else:
            ctx = ctx.unsqueeze(1).expand(-1, self.n_cls, -1, -1)
            prefix = prefix.unsqueeze(0).repeat(self.num_p, 1, 1, 1)
            suffix = suffix.unsqueeze(0).repeat(self.num_p, 1, 1, 1)
        return torch.cat([prefix, ctx, suffix], dim=-2)


class ClipTestTimeTuning(nn.Module):
    """What ``get_coop(...)`` returns: image encoder, text encoder, prompt learner."""

    def __init__(
        self,
        clip_model: nn.Module,
        classnames: list[str],
        *,
        encoder: Callable[[nn.Module], nn.Module] = TextEncoder,
        learner: type[PromptLearner] = PromptLearner,
        **kw: Any,
    ) -> None:
        super().__init__()
        self.image_encoder = clip_model.visual
        self.text_encoder = encoder(clip_model)
        self.logit_scale = clip_model.logit_scale.data
        self.prompt_learner = learner(clip_model, classnames, **kw)

    def reset(self) -> None:
        self.prompt_learner.reset()

    def reset_classnames(self, classnames: list[str], arch: str) -> None:
        self.prompt_learner.reset_classnames(classnames, arch)

    def get_text_features(self) -> torch.Tensor:
        prompts = self.prompt_learner()
        tokens = self.prompt_learner.tokenized_prompts
        out = self.text_encoder(prompts, tokens, None) if isinstance(self.text_encoder, AuxTextEncoder) else None
        feats = out[0] if out is not None else self.text_encoder(prompts, tokens)
        return feats / feats.norm(dim=-1, keepdim=True)


def get_coop(clip_model: nn.Module, classnames: list[str], kind: str = "tpt", **kw: Any) -> ClipTestTimeTuning:
    """A fresh stand-in model of ``kind`` on a private copy of ``clip_model`` (same weights)."""
    clip_model = copy.deepcopy(clip_model)
    if kind == "tpt":
        return ClipTestTimeTuning(clip_model, classnames, **kw)
    if kind == "fpp_reference":
        return ClipTestTimeTuning(clip_model, classnames, encoder=AuxTextEncoder, **kw)
    if kind == "scaled":
        return ClipTestTimeTuning(clip_model, classnames, encoder=ScaledTextEncoder, **kw)
    if kind == "dynaprompt":
        return ClipTestTimeTuning(clip_model, classnames, learner=DynaPromptLearner, **kw)
    raise ValueError(kind)


# -- TPT's CoCoOp path (clip/cocoop.py) -------------------------------------------------------
class CoCoOpPromptLearner(nn.Module):
    """TPT's ``CoCoOpPromptLearner`` (``model.prompt_generator``): ``ctx`` plus a meta-net; no
    ``reset`` and no ``ctx_init_state``; ``forward(im_features, ctx_only)``."""

    def __init__(
        self, clip_model: nn.Module, classnames: list[str], n_ctx: int = 4, ctx_init: str | None = "a_photo_of_a"
    ) -> None:
        super().__init__()
        self.dtype = clip_model.dtype
        self.ctx_dim = clip_model.ln_final.weight.shape[0]
        embed_dim = clip_model.text_projection.shape[1]
        self._load = lambda: clip_model  # upstream re-loads CLIP in reset_classnames
        if ctx_init:
            ctx_init = ctx_init.replace("_", " ")
            n_ctx = n_words(ctx_init)
            with torch.no_grad():
                emb = clip_model.token_embedding(tokenize([ctx_init])).type(self.dtype)
            ctx_vectors = emb[0, 1 : 1 + n_ctx, :]
            prompt_prefix = ctx_init
        else:
            ctx_vectors = torch.randn(n_ctx, self.ctx_dim, generator=torch.Generator().manual_seed(0)) * 0.02
            prompt_prefix = " ".join(["X"] * n_ctx)
        self.prompt_prefix = prompt_prefix
        self.ctx = nn.Parameter(ctx_vectors.clone())
        self.meta_net = nn.Sequential(
            OrderedDict(
                [
                    ("linear1", nn.Linear(embed_dim, embed_dim // 16)),
                    ("relu", nn.ReLU(inplace=True)),
                    ("linear2", nn.Linear(embed_dim // 16, self.ctx_dim)),
                ]
            )
        )
        self.ctx_init = ctx_init
        self.class_token_position = "end"
        self.n_ctx = n_ctx
        self._embed(classnames, register=True)

    def _embed(self, classnames: list[str], register: bool = False) -> None:
        names = [n.replace("_", " ") for n in classnames]
        tokens = tokenize([f"{self.prompt_prefix} {n}." for n in names])
        with torch.no_grad():
            emb = self._load().token_embedding(tokens).type(self.dtype)
        if register:
            self.register_buffer("token_prefix", emb[:, :1])
            self.register_buffer("token_suffix", emb[:, 1 + self.n_ctx :])
        else:
            self.token_prefix = emb[:, :1]
            self.token_suffix = emb[:, 1 + self.n_ctx :]
        self.tokenized_prompts = tokens
        self.name_lens = [len(tokenize([n])[0].nonzero()) - 2 for n in names]
        self.n_cls = len(names)

    def construct_prompts(self, ctx: torch.Tensor, prefix: torch.Tensor, suffix: torch.Tensor) -> torch.Tensor:
        return torch.cat([prefix, ctx, suffix], dim=1)

    def reset_classnames(self, classnames: list[str], arch: str) -> None:
        self._embed(classnames)

    def forward(self, im_features: torch.Tensor, ctx_only: bool = False) -> torch.Tensor:
        bias = self.meta_net(im_features).unsqueeze(1)  # (batch, 1, ctx_dim)
        ctx_shifted = self.ctx.unsqueeze(0) + bias  # (batch, n_ctx, ctx_dim)
        if ctx_only:
            return ctx_shifted
        return torch.stack(
            [
                self.construct_prompts(c.unsqueeze(0).expand(self.n_cls, -1, -1), self.token_prefix, self.token_suffix)
                for c in ctx_shifted
            ]
        )


class CoCoOpCLIP(nn.Module):
    """What TPT's ``get_cocoop(...)`` returns; ``gen_ctx`` makes the context TPT tunes per sample
    (``prompt_generator.ctx`` + the meta-net bias of the image). Upstream wraps ``gen_ctx`` in
    ``torch.cuda.amp.autocast()``; the stand-in runs in fp32 on the CPU."""

    def __init__(self, clip_model: nn.Module, classnames: list[str], n_ctx: int = 4, **kw: Any) -> None:
        super().__init__()
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale.data
        self.prompt_generator = CoCoOpPromptLearner(clip_model, classnames, n_ctx, **kw)
        self.tokenized_prompts = self.prompt_generator.tokenized_prompts
        self.dtype = clip_model.dtype

    def gen_ctx(self, image: torch.Tensor, aug: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            image_features = self.image_encoder(image.type(self.dtype))
            avg = image_features[0].unsqueeze(0) if aug else image_features.mean(dim=0, keepdim=True)
            ctx = self.prompt_generator(avg, ctx_only=True)
        return image_features, ctx.detach().clone()

    def forward_ctx(self, image_features: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        pg = self.prompt_generator
        prompts = torch.cat([pg.token_prefix, ctx.expand(pg.n_cls, -1, -1), pg.token_suffix], dim=-2)
        text_features = self.text_encoder(prompts, pg.tokenized_prompts)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        return self.logit_scale.exp() * image_features @ text_features.t()

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.forward_ctx(*inputs)


def get_cocoop(clip_model: nn.Module, classnames: list[str], **kw: Any) -> CoCoOpCLIP:
    """A fresh CoCoOp stand-in on a private copy of ``clip_model`` (meta-net drawn from seed 0)."""
    clip_model = copy.deepcopy(clip_model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return CoCoOpCLIP(clip_model, classnames, **kw)


# -- MaPLe / PromptAlign (trainers/prompt_align.py, clip/model.py) ------------------------------
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

    def __init__(self, blocks: nn.Module, n_ctx: int) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(*[MaPLeBlock(b, n_ctx, i == 0) for i, b in enumerate(blocks)])

    def forward(self, inputs: list[Any]) -> list[Any]:
        return self.resblocks(inputs)


class MaPLeTextEncoder(nn.Module):
    """PromptAlign's ``TextEncoder``: ``forward(prompts, tokenized_prompts, compound_prompts_deeper_text)``."""

    def __init__(self, clip_model: nn.Module, n_ctx: int) -> None:
        super().__init__()
        self.transformer = MaPLeTransformer(clip_model.transformer.resblocks, n_ctx)
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
            with torch.no_grad():
                emb = clip_model.token_embedding(tokenize([ctx_init])).type(self.dtype)
            ctx_vectors = emb[0, 1 : 1 + n_ctx, :]
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
        tokens = tokenize([f"{self._template} {n}." for n in names])
        with torch.no_grad():
            emb = self._load().token_embedding(tokens).type(self.dtype)
        if register:
            self.register_buffer("token_prefix", emb[:, :1])  # SOS
            self.register_buffer("token_suffix", emb[:, 1 + self.n_ctx :])  # rest of the template, CLS, EOS
        else:
            self.token_prefix = emb[:, :1]
            self.token_suffix = emb[:, 1 + self.n_ctx :]
        self.tokenized_prompts = tokens
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


def load_trained(model: nn.Module, seed: int = 1, scale: float = 0.02) -> None:
    """Stand in for loading a trained CoCoOp / MaPLe checkpoint: shift every prompt-learner
    parameter (``load_state_dict(strict=False)``, as the upstream loaders do)."""
    learner = getattr(model, "prompt_generator", None) or model.prompt_learner
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        state = {k: v + scale * torch.randn(v.shape, generator=g) for k, v in learner.named_parameters()}
    learner.load_state_dict(state, strict=False)


# -- unsupported designs ----------------------------------------------------------------------
class IT3ALearner(nn.Module):
    """DiffTPT's IT3A learner: several prompts in a plain list, no ``.ctx``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.ctx_list = [nn.Parameter(torch.zeros(4, width)) for _ in range(2)]
        self.ctx_init_state_list = [p.detach().clone() for p in self.ctx_list]


class IT3AModel(nn.Module):
    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.text_encoder = TextEncoder(clip_model)
        self.prompt_learner = IT3ALearner(clip_model.ln_final.weight.shape[0])
