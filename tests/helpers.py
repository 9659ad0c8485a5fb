"""Helpers shared by the tests and the stand-ins (imported as ``helpers``; fixtures are in conftest.py).

Everything a test needs is in this repository: the class lists under ``tests/data/`` (taken from
the benchmark label sets; the first 8 DTD classes are what most tests use), tiny random CLIP
models built by ``examples/random_clip.py``, prompt files and Hugging Face caches made here.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from random_clip import build_random_clip

import fpp_init
from fpp_init import FPPConfig, FPPPrompt
from fpp_init._runtime import frozen
from fpp_init.algorithm import optimize_flat_prompt
from fpp_init.models.clip import import_clip
from fpp_init.towers import CallableTextTower, CausalTextTower, openai_spec

if TYPE_CHECKING:
    from fpp_init.adapters import PromptDesign
    from fpp_init.towers import TextTower

DATA = Path(__file__).resolve().parent / "data"
#: a Hub commit hash for the hand-built caches
COMMIT = "0123456789abcdef0123456789abcdef01234567"
#: the short run the adapter tests pretrain with: ``fpp_init.apply(model, **FAST)`` and, by hand, ``CFG``
FAST = dict(steps=3, seed=1, cache=False, progress=False)
CFG = FPPConfig(steps=3, seed=1)


def build_tiny_clip(width: int = 128, layers: int = 2, seed: int = 0, context_length: int = 77) -> torch.nn.Module:
    """A random-weight CLIP, built by the same code as ``examples/random_clip.py``."""
    return build_random_clip(width, layers, seed, context_length)


def clip_tower(model: torch.nn.Module) -> CausalTextTower:
    """The fast tower of a clip-anytorch model (or a TPT-style text encoder with the same parts)."""
    spec = openai_spec(model.transformer, model.positional_embedding, model.ln_final, model.text_projection)
    assert spec is not None
    return CausalTextTower(spec)


def is_fast_tower(model: torch.nn.Module) -> bool:
    return openai_spec(model.transformer, model.positional_embedding, model.ln_final, model.text_projection) is not None


def save_and_load(model: torch.nn.Module, path: Path) -> torch.nn.Module:
    clip = import_clip()
    torch.save(model.state_dict(), path)
    loaded, _ = clip.load(str(path), device="cpu", jit=False)
    return loaded.eval()


def classnames(name: str, limit: int | None = None) -> list[str]:
    """A class list of ``tests/data/`` (``dtd``), the first ``limit`` names."""
    names = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    return names[:limit] if limit else names


def make_prompt(n_ctx: int = 4, width: int = 128, seed: int = 0, **kw: object) -> FPPPrompt:
    gen = torch.Generator().manual_seed(seed)
    values: dict[str, object] = dict(
        backbone="ViT-B/16",
        template="a photo of a",
        classnames=None,
        class_agnostic=True,
        num_classes=100,
        config={**FPPConfig(steps=7, seed=seed).to_dict(), "flat_weight": 1 + 15 / 100},  # as pretraining records it
        final_losses={"align": 0.125, "flat": 0.5, "loss": 0.625, "cos": 0.98},
        fingerprint="00ff00ff00ff00ff",
    )
    values.update(kw)
    return FPPPrompt(ctx=torch.randn(n_ctx, width, generator=gen), **values)  # type: ignore[arg-type]


def make_hf_cache(
    root: Path, repo_id: str, files: dict[str, bytes], *, commit: str = COMMIT, refs: tuple[str, ...] = ("main",)
) -> Path:
    """The layout ``hf_hub_download`` writes: ``models--O--R/{blobs,snapshots/<commit>,refs/<ref>}``."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)  # no trailing newline, as huggingface_hub writes it
    return root


def tokenize(texts: list[str]) -> torch.Tensor:
    return import_clip().tokenize(texts)


def n_words(text: str) -> int:
    return len(text.split(" "))


def to_float64(model: nn.Module) -> nn.Module:
    """An fp64 copy of ``model`` that really computes in fp64: ``.double()``, CLIP's fp32-casting
    LayerNorms made plain ``nn.LayerNorm`` (their forward casts to fp32, which fp64 weights cannot
    run), and the plain tensor attributes and dtypes kept at construction (``ctx_init_state``,
    ``TextEncoder.dtype``, lists of init states) converted as well."""
    twin = copy.deepcopy(model).double()
    for m in twin.modules():
        if isinstance(m, nn.LayerNorm) and type(m) is not nn.LayerNorm:
            m.__class__ = nn.LayerNorm
        for k, v in list(vars(m).items()):
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not isinstance(v, nn.Parameter):
                setattr(m, k, v.double())
            elif v is torch.float32:
                setattr(m, k, torch.float64)
            elif isinstance(v, list) and v and all(isinstance(t, torch.Tensor) for t in v):
                setattr(m, k, [t.double() if t.is_floating_point() else t for t in v])
    return twin


class Trace:
    """A ``Checkpointing`` for ``optimize_flat_prompt`` that keeps the ctx after every step (fp64, CPU)."""

    every = 1

    def __init__(self) -> None:
        self.ctx: list[torch.Tensor] = []

    def load(self) -> None:
        return None

    def save(self, state: Any) -> None:
        self.ctx.append(state.ctx.detach().double().cpu().clone())

    def trajectory(self) -> torch.Tensor:
        """``[steps, n_ctx, D]``."""
        return torch.stack(self.ctx)


def load_trained(model: nn.Module, seed: int = 1, scale: float = 0.02) -> None:
    """Stand in for loading a trained CoCoOp / MaPLe checkpoint: shift every prompt-learner
    parameter (``load_state_dict(strict=False)``, as the upstream loaders do)."""
    learner = getattr(model, "prompt_generator", None) or getattr(model, "prompt_learner", None)
    if learner is None:  # DART: no prompt learner and nothing trained to load (--load is not read on --myclip)
        return
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        state = {k: v + scale * torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in learner.named_parameters()}
    learner.load_state_dict(state, strict=False)


# -- the adapter tests -----------------------------------------------------------------------------
def reference(clip: nn.Module, names: list[str], **kw: object) -> FPPPrompt:
    """The same FPP run through the front door (clip-anytorch model, template)."""
    return fpp_init.pretrain_flat_prompt(clip, names, template="a photo of a", steps=3, seed=1, progress=False, **kw)


def flags(model: nn.Module) -> tuple[list[bool], list[bool]]:
    """The caller state ``apply`` must leave as found: every ``requires_grad`` and every ``training``."""
    return [p.requires_grad for p in model.parameters()], [m.training for m in model.modules()]


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model.state_dict()``, every tensor cloned."""
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Every entry of ``model.state_dict()`` equals ``state``'s (a failure names the key)."""
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def callable_tower(
    encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], width: int, dtype: torch.dtype = torch.float32
) -> CallableTextTower:
    """A tower that calls ``encode(prompts, tokens)`` on every position (no fast path), on the CPU."""
    return CallableTextTower(
        encode, width=width, context_length=77, dtype=dtype, device=torch.device("cpu"), fingerprint=str
    )


def trajectory(design: PromptDesign, tower: TextTower, seed: int, steps: int = 8) -> torch.Tensor:
    """The ctx after every step of pretraining ``design``'s prompts through ``tower`` (``[steps, n_ctx, D]``)."""
    trace, cfg = Trace(), FPPConfig(steps=steps, seed=seed)
    with frozen([design.text_encoder]):
        optimize_flat_prompt(tower, design.embedded(), design.current_init(), cfg, progress=False, checkpoint=trace)
    return trace.trajectory()


def cpu_half_matmul() -> bool:
    try:
        torch.ones(2, 2, dtype=torch.float16) @ torch.ones(2, 2, dtype=torch.float16)
    except RuntimeError:  # torch < 2.1 has no fp16 matmul on the CPU
        return False
    return True
