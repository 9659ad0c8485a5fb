"""What every prompt-learner design shares: :class:`PromptDesign` and the mechanics written once.

A design is one way a TPT-style codebase lays out its prompt learner: where the learnable
context lives, what its own per-sample ``reset()`` restores, how its text encoder is called.
A subclass states what differs (a few class attributes, a ``matches`` test and, where the
design needs it, ``current_init`` / ``install`` / ``encoder_args``); the layout checks, the
embedded prompts, the fast tower and its agreement check, the fingerprint, snapshots and
undo live here. Adapters never import ``clip``: everything comes from the live model.
"""

from __future__ import annotations

import hashlib
import inspect
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import torch
from torch import nn

from ..algorithm import EmbeddedPrompts
from ..errors import AdapterError, FastPathWarning
from ..towers import CallableTextTower, CausalTextTower, TextTower, TowerSpec, fingerprint_spec, openai_spec
from ..towers.fingerprint import fingerprint_modules
from ..towers.openai import TEXT_PARTS

__all__ = ["PromptDesign", "Snapshot", "encoder_call", "describe", "features_agree", "single", "text_encoder_of"]

#: attributes shown when describing an object that no design matches (designs add their ``marks``).
COMMON_MARKS = (
    "prompt_learner",
    "text_encoder",
    "ctx",
    "ctx_init_state",
    "token_prefix",
    "token_suffix",
    "tokenized_prompts",
)
_PROMPT_BUFFERS = ("token_prefix", "token_suffix", "tokenized_prompts")


@dataclass
class Snapshot:
    """What :meth:`PromptDesign.install` changes, as found before the first install: the ctx values and
    the prompt-learner attributes it replaces (the objects themselves, restored by identity)."""

    ctx: torch.Tensor
    attrs: dict[str, Any] = field(default_factory=dict)


def single(t: torch.Tensor, what: str) -> torch.Tensor:
    """``[n_ctx, D]`` from a 2-D tensor or a 3-D stack of identical copies, as a detached fp32 CPU copy."""
    t = t.detach()
    if t.dim() == 3 and t.shape[0] >= 1 and bool((t == t[:1]).all()):
        t = t[0]
    if t.dim() == 2:
        return t.float().cpu().clone()
    raise AdapterError(
        f"{what} has shape {tuple(t.shape)}: several different prompts per model are not supported "
        "(fpp_init.apply installs one [n_ctx, D] prompt)"
    )


def encoder_call(encoder: object) -> str | None:
    """How a text encoder is called, from its signature: ``"plain"`` ``(prompts, tokenized_prompts)``,
    ``"aux"`` (a third ``aux_outputs`` argument, returns a tuple), ``"compound"`` (a third
    ``compound_prompts_deeper_text`` argument); ``None`` when it takes fewer than two or is unreadable."""
    forward: Any = getattr(encoder, "forward", encoder)  # signature() refuses a non-callable with TypeError
    try:
        params = list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError):
        return None
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if "aux_outputs" in names:
        return "aux"
    if any("compound" in n for n in names):
        return "compound"
    return "plain" if len(names) >= 2 else None


def features_agree(ref: torch.Tensor, got: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether a tower's features ``got`` are the live encoder's ``ref``: same shape, max abs difference within
    1e-4 (1e-2 in fp16) of ``ref``'s largest magnitude."""
    ref, got = ref.float(), got.float()
    scale = float(ref.abs().max()) or 1.0
    tol = 1e-2 if dtype == torch.float16 else 1e-4
    return ref.shape == got.shape and float((ref - got).abs().max()) <= tol * scale


def signature_text(encoder: object) -> str:
    forward: Any = getattr(encoder, "forward", encoder)  # signature() refuses a non-callable with TypeError
    try:
        return f"{type(encoder).__name__}.forward{inspect.signature(forward)}"
    except (TypeError, ValueError):
        return f"{type(encoder).__name__} (signature unreadable)"


def describe(obj: object, marks: tuple[str, ...] = COMMON_MARKS) -> str:
    found = [a for a in dict.fromkeys(marks) if hasattr(obj, a)]
    return f"{type(obj).__module__}.{type(obj).__name__} with attributes {found or 'none of the TPT-style ones'}"


def text_encoder_of(root: Any) -> Any:
    """``root.text_encoder``, with ``nn.DataParallel`` / ``DistributedDataParallel`` wrappers stripped (TCA's
    ``--multi_gpu`` wraps the text encoder itself); ``None`` when there is none."""
    encoder = getattr(root, "text_encoder", None)
    for _ in range(8):
        if isinstance(encoder, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            encoder = encoder.module
    return encoder


class PromptDesign:
    """One prompt-learner design, bound to one live model (``root``, its prompt learner, its text encoder).

    Subclasses set the class attributes and ``matches``; override the methods marked *design* where
    the design differs from the TPT design (``ctx`` + ``ctx_init_state``, restored by ``reset()``).
    Register a subclass with :func:`~fpp_init.adapters.register_design`.
    """

    #: short name (``handle.design``; part of the cache key).
    name: ClassVar[str] = ""
    #: one line for messages.
    description: ClassVar[str] = ""
    #: the root's attribute holding the prompt learner.
    learner_attr: ClassVar[str] = "prompt_learner"
    #: how the text encoder is called (see :func:`encoder_call`).
    call: ClassVar[str] = "plain"
    #: tensors the learner must hold, with their role (named when missing).
    required: ClassVar[tuple[tuple[str, str], ...]] = (("ctx_init_state", "the state its reset() restores"),)
    #: learner attributes :meth:`install` replaces (kept by :meth:`snapshot`, put back by :meth:`restore`).
    replaced: ClassVar[tuple[str, ...]] = ("ctx_init_state",)
    #: attributes that identify the design (listed when describing an object no design matches).
    marks: ClassVar[tuple[str, ...]] = ()
    #: warned (``BeyondPaperWarning``) when installing into this design; ``None``: within the paper.
    beyond_paper: ClassVar[str | None] = None
    #: what a fingerprint mismatch can mean for this design.
    tower_parts: ClassVar[str] = "other CLIP weights"
    #: set on a known layout that is refused: the one-line reason (the design is never built).
    refusal: ClassVar[str | None] = None
    #: the codebase's method that changes the class set; ``apply`` wraps it to re-install (see :meth:`hook_owner`).
    hook: ClassVar[str] = "reset_classnames"

    # -- recognition ------------------------------------------------------------------------
    @classmethod
    def learner_of(cls, root: Any) -> Any:
        return getattr(root, cls.learner_attr, None)

    @classmethod
    def matches(cls, root: Any) -> bool:
        """Whether ``root`` (unwrapped) is of this design; raise :class:`AdapterError` for one that is of
        this design but malformed. *Design*: the default checks the learner, its ``required`` tensors and
        the encoder's ``call``; the rest of the layout is checked by :meth:`check_layout`, with reasons."""
        learner = cls.learner_of(root)
        return (
            learner is not None
            and all(isinstance(getattr(learner, attr, None), torch.Tensor) for attr, _ in cls.required)
            and encoder_call(text_encoder_of(root)) == cls.call
        )

    def __init__(self, root: Any) -> None:
        self.root = root
        self.learner = self.learner_of(root)
        self.check_layout()

    @property
    def where(self) -> str:
        return f"{type(self.learner).__name__} ({self.description})"

    # -- geometry (check_layout made sure of these types) -------------------------------------
    @property
    def text_encoder(self) -> nn.Module:
        """The codebase's text encoder (unwrapped from ``DataParallel``). *Design*."""
        return cast(nn.Module, text_encoder_of(self.root))

    @property
    def prefix(self) -> torch.Tensor:
        """Embeddings before the ctx, ``[C, P, D]``. *Design*."""
        return cast(torch.Tensor, self.learner.token_prefix)

    @property
    def suffix(self) -> torch.Tensor:
        """Embeddings after the ctx (class name, EOS, padding), ``[C, S, D]``. *Design*."""
        return cast(torch.Tensor, self.learner.token_suffix)

    @property
    def tokens(self) -> torch.Tensor:
        """The token ids of the prompts, ``[C, L]`` (EOS at the argmax). *Design*."""
        return cast(torch.Tensor, self.learner.tokenized_prompts)

    @property
    def ctx(self) -> nn.Parameter:
        return cast(nn.Parameter, self.learner.ctx)

    @property
    def width(self) -> int:
        return int(self.ctx.shape[-1])

    @property
    def n_ctx(self) -> int:
        return int(self.ctx.shape[-2])

    @property
    def ctx_start(self) -> int:
        return int(self.prefix.shape[-2])

    @property
    def num_classes(self) -> int:
        """The prompt rows the codebase encodes (one per class in most designs)."""
        return int(self.tokens.shape[0])

    @property
    def num_labels(self) -> int:
        """The classes the model decides between: ``C`` in ``lambda = 1 + 15/C``, and the prompt's ``num_classes``.
        The prompt rows unless a design encodes several rows per class. *Design*."""
        return self.num_classes

    @property
    def device(self) -> torch.device:
        """Where the text encoder runs. The prompt buffers can lag behind: TPT's CoCoOp
        ``reset_classnames`` builds them on the construction device (CPU) and the script moves
        the model with ``.cuda()`` only afterwards."""
        for t in self.text_encoder.parameters():
            return t.device
        return self.prefix.device

    def check_layout(self) -> None:
        """Refuse (clearly) what the design cannot serve; run again whenever the class set changed."""
        self.check_parts()
        self.check_geometry()

    def check_parts(self) -> None:
        """That the parts the design reads are there, with reasons. *Design*: the TPT layout's parts."""
        root, lrn = self.root, self.learner
        found = describe(lrn, COMMON_MARKS + self.marks)
        if not isinstance(text_encoder_of(root), nn.Module):
            raise AdapterError(f"found {describe(root)} but no text_encoder module beside the prompt learner")
        if not isinstance(getattr(lrn, "ctx", None), nn.Parameter):
            raise AdapterError(f"found a prompt learner {found} without an nn.Parameter 'ctx'")
        for attr, role in self.required:
            if not isinstance(getattr(lrn, attr, None), torch.Tensor):
                raise AdapterError(
                    f"found a prompt learner {found} without a {attr!r} tensor ({role}); not a "
                    f"{self.description} prompt learner"
                )
        missing = [a for a in _PROMPT_BUFFERS if not hasattr(lrn, a)]
        if missing:
            raise AdapterError(f"found a prompt learner {found} without {missing}")

    def check_geometry(self) -> None:
        """That the prompts the design reads fit together (shapes, widths, class token at the end)."""
        lrn = self.learner
        where = self.where
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
        prefix, suffix, tokens = self.prefix, self.suffix, self.tokens
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
        if bool((tokens.argmax(dim=-1) <= self.ctx_start + self.n_ctx).any()):
            raise AdapterError(f"{where}: some prompts have no class token after the context")

    # -- what the codebase encodes ------------------------------------------------------------
    def classnames(self) -> list[str] | None:
        """The class names, one per label (``None`` when the model does not keep them). *Design*."""
        names = getattr(self.learner, "classnames", None)
        if names is None:
            names = getattr(self.learner, "class_names", None)  # mariodoebler's OpenCLIP TPT spells it so
        return self.label_names(names)

    def label_names(self, names: Any) -> list[str] | None:
        """``names`` as the class names of this model: a list of strings, one per label, else ``None``."""
        if (
            isinstance(names, (list, tuple))
            and len(names) == self.num_labels
            and all(isinstance(n, str) for n in names)
        ):
            return list(names)
        return None

    def template(self) -> str | None:
        """The words the initial ctx embeds (``None``: a random or trained ctx). *Design*."""
        t = getattr(self.learner, "prompt_prefix", None)
        if not isinstance(t, str) or set(t.split()) <= {"X"}:  # "X X X X": TPT's placeholder for a random ctx
            return None
        return t

    def embedded(self) -> EmbeddedPrompts:
        return EmbeddedPrompts(
            prefix=self.prefix.detach(),
            suffix=self.suffix.detach(),
            eot_pos=self.tokens.argmax(dim=-1),
        )

    def prompts_digest(self) -> str:
        """Hash of what the class set contributes (embeddings up to the last EOS, EOS positions)."""
        p = self.embedded()
        n_used = int(p.eot_pos.max()) + 1
        h = hashlib.sha256()
        for t in (p.prefix, p.suffix[:, : n_used - self.ctx_start - self.n_ctx], p.eot_pos):
            t = t.detach().to("cpu").contiguous()
            h.update(str((tuple(t.shape), str(t.dtype))).encode())
            h.update(t.float().numpy().tobytes() if t.is_floating_point() else t.numpy().tobytes())
        return h.hexdigest()[:32]

    # -- the prompt ---------------------------------------------------------------------------
    def current_init(self) -> torch.Tensor:
        """The effective initial prompt now, ``[n_ctx, D]`` fp32 CPU: what the codebase's reset restores. *Design*."""
        return single(self.learner.ctx_init_state, "prompt_learner.ctx_init_state")

    def install(self, prompt_ctx: torch.Tensor) -> None:
        """Make ``prompt_ctx`` ``[n_ctx, D]`` the state the codebase's reset restores, in place. *Design*.

        ``ctx`` is written with ``copy_`` (never replaced: an optimizer created earlier keeps it)."""
        state = self.write_ctx(prompt_ctx)
        self.learner.ctx_init_state = state.clone()

    def write_ctx(self, prompt_ctx: torch.Tensor) -> torch.Tensor:
        """``ctx.copy_(prompt_ctx)`` (broadcast over stacked copies); returns the value on ctx's device and dtype."""
        ctx = self.ctx
        state = prompt_ctx.to(ctx.device, ctx.dtype).expand_as(ctx)
        with torch.no_grad():
            ctx.copy_(state)
        return state

    def hook_owner(self) -> Any:
        """The object whose :attr:`hook` method ``apply`` wraps: the learner's, else the root's; ``None``: neither."""
        for owner in (self.learner, self.root):
            if callable(getattr(owner, self.hook, None)):
                return owner
        return None

    def snapshot(self) -> Snapshot:
        return Snapshot(self.ctx.detach().clone(), {a: getattr(self.learner, a) for a in self.replaced})

    def restore(self, snap: Snapshot) -> None:
        with torch.no_grad():
            self.ctx.copy_(snap.ctx)
        for attr, value in snap.attrs.items():
            setattr(self.learner, attr, value)

    # -- the text encoder -----------------------------------------------------------------------
    def encoder_args(self) -> tuple[Any, ...]:
        """Arguments the text encoder takes after ``(prompts, tokenized_prompts)``. *Design*."""
        return ()

    def deep_prompts(self) -> list[torch.Tensor]:
        """Prompts the encoder puts into later blocks, detached (part of the tower). *Design*."""
        return []

    def encode(self, prompts: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The codebase's own text encoder on embedded prompts: unnormalised features ``[B, E]``."""
        out: torch.Tensor | tuple[torch.Tensor, ...] = self.text_encoder(prompts, tokens, *self.encoder_args())
        return out[0] if isinstance(out, tuple) else out

    def spec(self) -> TowerSpec | None:
        """The canonical description of the text tower, when the encoder is OpenAI-CLIP-shaped; deep prompts
        replace the ctx rows before block ``i + 1`` (MaPLe's convention)."""
        enc = self.text_encoder
        parts: dict[str, Any] = {a: getattr(enc, a, None) for a in TEXT_PARTS}  # openai_spec checks each
        if any(p is None for p in parts.values()):
            return None
        layers = len(getattr(parts["transformer"], "resblocks", ()))
        deep = {i + 1: p for i, p in enumerate(self.deep_prompts()) if i + 1 < layers}
        mask = getattr(enc, "attn_mask", None)  # OpenCLIP keeps the causal mask on the model, not in the blocks
        mask = mask if isinstance(mask, torch.Tensor) else None
        return openai_spec(**parts, attn_mask=mask, deep_prompts=deep, deep_start=self.ctx_start)

    def fingerprint(self) -> str:
        """The text tower's fingerprint: equal to ``fingerprint_model`` of the same CLIP weights (deep prompts
        are part of the tower's function, so of its fingerprint)."""
        spec = self.spec()
        if spec is not None:
            return fingerprint_spec(spec)
        return fingerprint_modules([self.text_encoder, *self.deep_prompts()])

    def tower(self) -> TextTower:
        """The fast exact tower when the encoder is OpenAI-CLIP-shaped and agrees with it, else the encoder itself."""
        spec = self.spec()
        if spec is not None:
            fast = CausalTextTower(spec)
            if self.agrees(fast):
                return fast
            warnings.warn(
                f"the fast text tower disagrees with {type(self.text_encoder).__name__}.forward; using the (slower) "
                "encoder itself",
                FastPathWarning,
                stacklevel=4,
            )
        return self.encoder_tower()

    def encoder_tower(self) -> CallableTextTower:
        """The codebase's own text encoder as a tower (:meth:`encode` on every position; no fast path)."""
        dtype = getattr(self.text_encoder, "dtype", None)
        if not isinstance(dtype, torch.dtype):
            dtype = self.prefix.dtype
        return CallableTextTower(
            self.encode,
            width=self.width,
            context_length=int(self.tokens.shape[-1]),
            dtype=dtype,
            device=self.device,
            fingerprint=self.fingerprint,
        )

    def agrees(self, tower: TextTower) -> bool:
        """Whether ``tower`` gives the live encoder's features on two prompts (cheap exactness guard)."""
        p = self.embedded()
        n = min(2, p.num_classes)
        ctx = self.current_init().to(p.prefix.device, p.prefix.dtype)
        x = EmbeddedPrompts(p.prefix[:n], p.suffix[:n], p.eot_pos[:n]).assemble(ctx).to(self.device)
        tokens = self.tokens[:n].to(self.device)
        with torch.no_grad():
            ref = self.encode(x.to(tower.dtype), tokens)
            got = tower.encode(x, p.eot_pos[:n])
        return features_agree(ref, got, tower.dtype)
