"""Thin per-family knowledge: where the prompt lives, its geometry, how to install it."""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..algorithm import EmbeddedPrompts
from ..errors import AdapterError, FastPathWarning
from ..towers import (
    TEXT_PARTS,
    CallableTextTower,
    CausalTextTower,
    TextTower,
    TowerSpec,
    fingerprint_modules,
    fingerprint_spec,
    openai_spec,
)
from ._detect import Convention, Family, detect, encoder_convention

logger = logging.getLogger(__name__)

__all__ = ["LiveModel", "Snapshot", "MAPLE_WARNING"]

#: warned (BeyondPaperWarning) when FPP is installed in a MaPLe / PromptAlign model.
MAPLE_WARNING = (
    "MaPLe / PromptAlign: the FPP prompt is pretrained on the text branch only (with the model's deep "
    "text prompts), but prompt_learner.ctx also feeds the image branch through prompt_learner.proj; FPP "
    "does not account for that, and the paper evaluates only CLIP TPT. This use is beyond the paper: "
    "compare with the original initialisation before relying on it"
)


@dataclass
class Snapshot:
    """What :meth:`LiveModel.install` changes, as found before the first install."""

    ctx: torch.Tensor
    ctx_init_state: torch.Tensor | None  # None for CoCoOp (it has none)
    init_ctx: torch.Tensor | None


def _single(t: torch.Tensor, what: str) -> torch.Tensor:
    """``[n_ctx, D]`` from a 2-D tensor or a 3-D stack of identical copies."""
    if t.dim() == 2:
        return t
    if t.dim() == 3 and t.shape[0] >= 1 and bool((t == t[:1]).all()):
        return t[0]
    raise AdapterError(
        f"{what} has shape {tuple(t.shape)}: several different prompts per model are not supported "
        "(fpp_init.apply installs one [n_ctx, D] prompt)"
    )


class LiveModel:
    """A TPT-family model seen through the attributes the families share."""

    def __init__(self, model: Any) -> None:
        self.family, self.root, self.learner = detect(model)
        self.text_encoder: nn.Module = self.root.text_encoder
        self.convention = encoder_convention(self.text_encoder)
        self._check_layout()

    # -- geometry -----------------------------------------------------------------------
    @property
    def ctx(self) -> nn.Parameter:
        return self.learner.ctx  # type: ignore[no-any-return]

    @property
    def width(self) -> int:
        return int(self.ctx.shape[-1])

    @property
    def n_ctx(self) -> int:
        if self.family == Family.DYNAPROMPT:
            return int(self.learner.init_ctx.shape[-2])
        return int(self.ctx.shape[-2])

    @property
    def device(self) -> torch.device:
        """Where the text encoder runs. The prompt buffers can lag behind: TPT's CoCoOp
        ``reset_classnames`` builds them on the construction device (CPU) and the script moves
        the model with ``.cuda()`` only afterwards."""
        for t in self.text_encoder.parameters():
            return t.device
        return self.learner.token_prefix.device

    @property
    def ctx_start(self) -> int:
        return int(self.learner.token_prefix.shape[-2])

    def _check_layout(self) -> None:
        lrn = self.learner
        where = f"{type(lrn).__name__} ({self.family.description})"
        position = getattr(lrn, "class_token_position", "end")
        if position != "end":
            raise AdapterError(
                f"{where} puts the class token at position {position!r}; FPP supports only the class "
                "token at the end (a ctx_init without [CLS])"
            )
        if getattr(lrn, "learned_cls", False):
            raise AdapterError(f"{where} learns the class token (learned_cls=True); FPP needs real class names")
        if self.ctx.dim() not in (2, 3):
            raise AdapterError(f"{where}.ctx has shape {tuple(self.ctx.shape)}; expected [n_ctx, D]")
        prefix, suffix, tokens = lrn.token_prefix, lrn.token_suffix, lrn.tokenized_prompts
        if prefix.dim() != 3 or suffix.dim() != 3 or tokens.dim() != 2:
            raise AdapterError(
                f"{where}: token_prefix {tuple(prefix.shape)}, token_suffix {tuple(suffix.shape)} and "
                f"tokenized_prompts {tuple(tokens.shape)} are not [C, P, D], [C, S, D] and [C, L]"
            )
        c, length = tokens.shape
        if prefix.shape[0] != c or suffix.shape[0] != c:
            raise AdapterError(f"{where}: token_prefix/token_suffix/tokenized_prompts disagree on the class count")
        if prefix.shape[-2] + self.n_ctx + suffix.shape[-2] != length:
            raise AdapterError(
                f"{where}: prefix ({prefix.shape[-2]}) + ctx ({self.n_ctx}) + suffix ({suffix.shape[-2]}) "
                f"positions do not add up to the context length {length}"
            )
        if prefix.shape[-1] != self.width or suffix.shape[-1] != self.width:
            raise AdapterError(f"{where}: token embeddings are not {self.width} wide like ctx")
        if self.family == Family.DYNAPROMPT and self.learner.init_ctx.shape[-1] != self.width:
            raise AdapterError(f"{where}: init_ctx width differs from ctx width")
        eot = tokens.argmax(dim=-1)
        if bool((eot <= self.ctx_start + self.n_ctx).any()):
            raise AdapterError(f"{where}: some prompts have no class token after the context")

    def classnames(self) -> list[str] | None:
        names = getattr(self.learner, "classnames", None)
        if (
            isinstance(names, (list, tuple))
            and len(names) == self.num_classes
            and all(isinstance(n, str) for n in names)
        ):
            return list(names)
        return None

    @property
    def num_classes(self) -> int:
        return int(self.learner.tokenized_prompts.shape[0])

    def template(self) -> str | None:
        if self.family in (Family.COCOOP, Family.MAPLE):  # both always load a trained ctx: not the template's words
            return None
        t = getattr(self.learner, "prompt_prefix", None)
        if not isinstance(t, str) or set(t.split()) <= {"X"}:  # "X X X X": TPT's placeholder for a random ctx
            return None
        return t

    def embedded(self) -> EmbeddedPrompts:
        lrn = self.learner
        return EmbeddedPrompts(
            prefix=lrn.token_prefix.detach(),
            suffix=lrn.token_suffix.detach(),
            eot=lrn.tokenized_prompts.argmax(dim=-1),
        )

    def prompts_digest(self) -> str:
        """Hash of what the class set contributes (embeddings up to the last EOS, EOS positions)."""
        p = self.embedded()
        n_used = int(p.eot.max()) + 1
        h = hashlib.sha256()
        for t in (p.prefix, p.suffix[:, : n_used - self.ctx_start - self.n_ctx], p.eot):
            t = t.detach().to("cpu").contiguous()
            h.update(str((tuple(t.shape), str(t.dtype))).encode())
            h.update(t.float().numpy().tobytes() if t.is_floating_point() else t.numpy().tobytes())
        return h.hexdigest()[:32]

    # -- the prompt -----------------------------------------------------------------------
    def _residual(self) -> torch.Tensor:
        return _single(self.learner.ctx_init_state.detach(), "prompt_learner.ctx_init_state")

    def current_init(self) -> torch.Tensor:
        """The effective initial prompt now, ``[n_ctx, D]`` fp32 CPU: what ``reset()`` restores.

        CoCoOp: ``prompt_generator.ctx`` (the base ``gen_ctx`` adds the meta-net bias to).
        MaPLe / PromptAlign: ``ctx`` itself, not ``ctx_init_state``: loading the trained
        checkpoint updates only ``ctx``, and ``trainer.tpt()`` snapshots it with
        ``set_prompt_inits()`` before tuning.
        """
        if self.family in (Family.COCOOP, Family.MAPLE):
            return _single(self.ctx.detach(), "prompt_learner.ctx").float().cpu().clone()
        if self.family == Family.DYNAPROMPT:
            init = self.learner.init_ctx.detach()
            return (init.float().cpu() + self._residual().float().cpu()).clone()
        return self._residual().float().cpu().clone()

    def snapshot(self) -> Snapshot:
        init = getattr(self.learner, "init_ctx", None) if self.family == Family.DYNAPROMPT else None
        state = None if self.family == Family.COCOOP else self.learner.ctx_init_state
        return Snapshot(ctx=self.ctx.detach().clone(), ctx_init_state=state, init_ctx=init)

    def install(self, prompt_ctx: torch.Tensor) -> None:
        """Make ``prompt_ctx`` ``[n_ctx, D]`` the state ``reset()`` restores, in place.

        CoCoOp has no ``reset()``: the prompt becomes ``prompt_generator.ctx``, which
        ``gen_ctx`` shifts by the image-dependent meta-net bias to start each sample's tuning.
        """
        lrn, ctx = self.learner, self.ctx
        if self.family == Family.DYNAPROMPT:
            init = lrn.init_ctx
            residual = self._residual().to(init.device, torch.float32)
            lrn.init_ctx = (prompt_ctx.to(init.device, torch.float32) - residual).to(init.dtype).clone()
            return
        state = prompt_ctx.to(ctx.device, ctx.dtype)
        with torch.no_grad():
            ctx.copy_(state.expand_as(ctx))
        if self.family != Family.COCOOP:
            lrn.ctx_init_state = state.expand_as(ctx).clone()

    def restore(self, snap: Snapshot) -> None:
        lrn = self.learner
        with torch.no_grad():
            self.ctx.copy_(snap.ctx)
        if snap.ctx_init_state is not None:
            lrn.ctx_init_state = snap.ctx_init_state
        if snap.init_ctx is not None:
            lrn.init_ctx = snap.init_ctx

    # -- the text encoder -----------------------------------------------------------------
    def _deep_prompts(self) -> list[torch.Tensor]:
        """MaPLe's deeper text prompts, detached (fixed while FPP pretrains; no grads leak into them)."""
        return [p.detach() for p in self.learner.compound_prompts_text]

    def _call_encoder(self, prompts: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        if self.convention == Convention.COMPOUND:
            out = self.text_encoder(prompts, tokens, self._deep_prompts())
        elif self.convention == Convention.AUX:
            out = self.text_encoder(prompts, tokens, None)
        else:
            out = self.text_encoder(prompts, tokens)
        return out[0] if isinstance(out, tuple) else out

    def spec(self) -> TowerSpec | None:
        """The canonical description of the text tower, when the encoder is OpenAI-CLIP-shaped."""
        enc = self.text_encoder
        parts = {a: getattr(enc, a, None) for a in TEXT_PARTS}
        if any(p is None for p in parts.values()):
            return None
        deep: dict[int, torch.Tensor] = {}
        if self.convention == Convention.COMPOUND:
            # MaPLe: block i >= 1 first replaces the ctx rows of every prompt by deep prompt i - 1
            layers = len(getattr(parts["transformer"], "resblocks", ()))
            deep = {i + 1: p for i, p in enumerate(self._deep_prompts()) if i + 1 < layers}
        return openai_spec(**parts, deep_prompts=deep, deep_start=self.ctx_start)  # type: ignore[arg-type]

    def fingerprint(self) -> str:
        """The text tower's fingerprint: equal to ``fingerprint_model`` of the same CLIP weights (for MaPLe,
        the deep prompts are part of the tower's function, so of its fingerprint)."""
        spec = self.spec()
        if spec is not None:
            return fingerprint_spec(spec)
        parts: list[nn.Module | torch.Tensor] = [self.text_encoder]
        if self.convention == Convention.COMPOUND:
            parts += self._deep_prompts()
        return fingerprint_modules(parts)

    def tower(self) -> TextTower:
        """The fast exact tower when the encoder is OpenAI-CLIP-shaped (checked), else a call-through."""
        spec = self.spec()
        if spec is not None:
            fast = CausalTextTower(spec)
            if self._agrees(fast):
                return fast
            warnings.warn(
                f"the fast text tower disagrees with {type(self.text_encoder).__name__}.forward; using the (slower) "
                "encoder itself",
                FastPathWarning,
                stacklevel=4,
            )
        dtype = getattr(self.text_encoder, "dtype", None)
        if not isinstance(dtype, torch.dtype):
            dtype = self.learner.token_prefix.dtype
        return CallableTextTower(
            self._call_encoder,
            width=self.width,
            context_length=int(self.learner.tokenized_prompts.shape[-1]),
            dtype=dtype,
            device=self.device,
            fingerprint=self.fingerprint,
        )

    def _agrees(self, tower: CausalTextTower) -> bool:
        """Check the fast tower against the live encoder on two prompts (cheap, exactness guard)."""
        p = self.embedded()
        n = min(2, p.num_classes)
        ctx = self.current_init().to(p.prefix.device, p.prefix.dtype)
        x = EmbeddedPrompts(p.prefix[:n], p.suffix[:n], p.eot[:n]).assemble(ctx).to(self.device)
        tokens = self.learner.tokenized_prompts[:n].to(self.device)
        with torch.no_grad():
            ref = self._call_encoder(x.to(tower.dtype), tokens).float()
            got = tower.encode(x, p.eot[:n]).float()
        scale = float(ref.abs().max()) or 1.0
        tol = 1e-2 if tower.dtype == torch.float16 else 1e-4
        return ref.shape == got.shape and float((ref - got).abs().max()) <= tol * scale
