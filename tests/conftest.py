"""Fixtures: tiny CLIP models, built here, saved as state dicts and loaded through the real ``clip.load(path)``.

Shared helpers (not fixtures) are in ``helpers.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fpp_init.models.clip import import_clip

pytest.register_assert_rewrite("helpers")  # before its import: assert_state's failures read as the tests' own
from helpers import build_tiny_clip, classnames  # noqa: E402

# Tiny models: one thread is fastest, and avoids OpenMP spin-waits on a busy 2-core machine.
torch.set_num_threads(1)


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


@pytest.fixture(scope="module")
def clip3() -> torch.nn.Module:
    """Three text layers, so that prompt depth 3 puts deep prompts (MaPLe, ZERO, TAPT) into blocks 1 and 2."""
    return build_tiny_clip(128, layers=3)


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
