"""The prompt file written by save(): a plain safetensors file with the documented metadata."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import fpp_init

NAMES = ["banded", "blotchy", "braided"]


@pytest.fixture(scope="module")
def prompt(tiny_clip):
    return fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, steps=3, seed=2, progress=False)


def test_file_is_plain_safetensors_with_metadata(prompt, tmp_path):
    path = prompt.save(tmp_path / "sub" / "p.safetensors")
    tensors = load_file(str(path))
    assert list(tensors) == ["ctx"]
    assert tensors["ctx"].shape == (4, 128) and tensors["ctx"].dtype == torch.float32
    assert torch.equal(tensors["ctx"], prompt.ctx)
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["format"] == "pt"
    assert meta["fpp_format"] == "fpp-init" and meta["fpp_format_version"] == "1"
    assert meta["template"] == "a photo of a"
    assert meta["fingerprint"] == prompt.fingerprint
    assert meta["fpp_init_version"] == fpp_init.__version__
    assert json.loads(meta["classnames"]) == NAMES
    assert json.loads(meta["class_agnostic"]) is False
    assert json.loads(meta["num_classes"]) == 3
    assert json.loads(meta["config"])["steps"] == 3
    assert json.loads(meta["config"])["flat_weight"] == pytest.approx(6.0)
    assert set(json.loads(meta["final_losses"])) == {"align", "flat", "loss", "cos"}
    assert json.loads(meta["n_ctx"]) == 4 and json.loads(meta["width"]) == 128


def test_round_trip(prompt, tmp_path):
    path = fpp_init.save_fpp_prompt(prompt, tmp_path / "p.safetensors")
    back = fpp_init.load_fpp_prompt(path)
    assert torch.equal(back.ctx, prompt.ctx)
    for field in ("backbone", "template", "classnames", "class_agnostic", "num_classes", "config", "fingerprint"):
        assert getattr(back, field) == getattr(prompt, field), field
    assert back.final_losses == pytest.approx(prompt.final_losses)


def test_write_is_atomic(prompt, tmp_path, monkeypatch):
    path = tmp_path / "p.safetensors"
    path.write_bytes(b"previous content")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        prompt.save(path)
    assert path.read_bytes() == b"previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.safetensors"]  # no temp file left


def test_to_moves_and_casts(prompt):
    half = prompt.to(dtype=torch.float16)
    assert half.ctx.dtype == torch.float16 and prompt.ctx.dtype == torch.float32
    assert "n_ctx=4" in repr(prompt) and "3 classes" in repr(prompt)


def test_written_file_has_the_usual_mode(prompt, tmp_path):
    mask = os.umask(0o022)
    try:
        path = prompt.save(tmp_path / "mode.safetensors")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
