"""Tiny CLIP models, built here, saved as state dicts and loaded through the real ``clip.load(path)``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from random_clip import build_random_clip

from fpp_init.models.clip import import_clip
from fpp_init.towers import CausalTextTower, openai_spec

# Tiny models: one thread is fastest, and avoids OpenMP spin-waits on a busy 2-core machine.
torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "classnames"
DTD_FALLBACK = ["banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "cracked"]


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


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "tiny128.pt"
    torch.save(build_tiny_clip(128).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_clip(tiny_ckpt: Path) -> torch.nn.Module:
    clip = import_clip()
    model, _ = clip.load(str(tiny_ckpt), device="cpu", jit=False)
    return model.eval()


def classnames(name: str, limit: int | None = None) -> list[str]:
    path = SHARED / f"{name}.json"
    names = json.loads(path.read_text()) if path.exists() else DTD_FALLBACK
    return names[:limit] if limit else names


@pytest.fixture(scope="session")
def dtd_names() -> list[str]:
    return classnames("dtd", 8)


@pytest.fixture(autouse=True, scope="session")
def _private_prompt_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep every test's prompt cache out of the user's ~/.cache."""
    import os

    old = os.environ.get("FPP_INIT_CACHE")
    os.environ["FPP_INIT_CACHE"] = str(tmp_path_factory.mktemp("fpp-cache"))
    yield
    if old is None:
        os.environ.pop("FPP_INIT_CACHE", None)
    else:
        os.environ["FPP_INIT_CACHE"] = old
