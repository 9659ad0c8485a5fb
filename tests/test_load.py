"""Loading prompt files: round trip, every bad file gets its own error, expectation checks."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import torch
from helpers import make_prompt
from safetensors.torch import save, save_file

import fpp_init
from fpp_init import FPPPrompt
from fpp_init.artifacts import read_prompt_file
from fpp_init.errors import (
    ConfigError,
    PickleFileError,
    PromptFileError,
    PromptFormatError,
    PromptMismatchError,
    PromptShapeError,
    PromptVersionError,
)


def write_st(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None) -> Path:
    save_file(tensors, str(path), metadata=meta)
    return path


# -- round trip ------------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    names = ["banded", "blotchy", "braided"]
    prompt = make_prompt(classnames=names, class_agnostic=False, num_classes=3, template="a photo of a")
    path = prompt.save(tmp_path / "p.safetensors")
    got = fpp_init.load_fpp_prompt(path)
    assert torch.equal(got.ctx, prompt.ctx) and got.ctx.dtype == torch.float32
    for field in ("backbone", "template", "classnames", "class_agnostic", "num_classes", "config", "final_losses"):
        assert getattr(got, field) == getattr(prompt, field), field
    assert got.fingerprint == prompt.fingerprint and got.version == prompt.version
    assert got.history == {}
    assert read_prompt_file(path).stored_dtype == "float32"
    # str paths work too; device / dtype options
    half = fpp_init.load_fpp_prompt(str(path), device="cpu", dtype=torch.float16)
    assert half.ctx.dtype == torch.float16 and torch.allclose(half.ctx.float(), prompt.ctx, atol=1e-2)
    with pytest.raises(ConfigError, match="floating-point"):
        fpp_init.load_fpp_prompt(path, dtype=torch.int64)


def test_fp16_tensor_in_file_is_read_as_fp32(tmp_path: Path) -> None:
    prompt = make_prompt()
    path = write_st(tmp_path / "h.safetensors", {"ctx": prompt.ctx.half()}, prompt.metadata())
    got = fpp_init.load_fpp_prompt(path)
    assert got.ctx.dtype == torch.float32 and torch.equal(got.ctx, prompt.ctx.half().float())
    assert read_prompt_file(path).stored_dtype == "float16"


def test_safetensors_header_length_ending_in_0x80_is_not_mistaken_for_pickle(tmp_path: Path) -> None:
    prompt = make_prompt()
    for pad in range(0, 300):
        meta = {**prompt.metadata(), "note": "x" * pad}
        data = save({"ctx": prompt.ctx}, metadata=meta)
        if data[0] == 0x80:
            break
    else:  # pragma: no cover
        pytest.fail("no padding gave a header length with low byte 0x80")
    path = tmp_path / "p.safetensors"
    path.write_bytes(data)
    assert torch.equal(fpp_init.load_fpp_prompt(path).ctx, prompt.ctx)


def test_safetensors_with_pickle_suffix_is_read(tmp_path: Path) -> None:
    prompt = make_prompt()
    path = prompt.save(tmp_path / "named-wrong.pt")
    assert torch.equal(fpp_init.load_fpp_prompt(path).ctx, prompt.ctx)


# -- bad files: one specific error each --------------------------------------------------


def test_missing_ctx_key(tmp_path: Path) -> None:
    prompt = make_prompt()
    path = write_st(tmp_path / "p.safetensors", {"prompt": prompt.ctx}, prompt.metadata())
    with pytest.raises(PromptFormatError, match=r"no 'ctx' tensor \(keys: \['prompt'\]\)"):
        fpp_init.load_fpp_prompt(path)


@pytest.mark.parametrize("shape", [(512,), (2, 4, 512), (1, 1, 4, 512)])
def test_wrong_rank(tmp_path: Path, shape: tuple[int, ...]) -> None:
    meta = make_prompt().metadata()
    path = write_st(tmp_path / "p.safetensors", {"ctx": torch.zeros(shape)}, meta)
    with pytest.raises(PromptShapeError, match=r"'ctx' in .* must have shape \[n_ctx, D\], got"):
        fpp_init.load_fpp_prompt(path)


def test_empty_tensor(tmp_path: Path) -> None:
    path = write_st(tmp_path / "p.safetensors", {"ctx": torch.zeros(0, 8)}, make_prompt().metadata())
    with pytest.raises(PromptShapeError, match="is empty"):
        fpp_init.load_fpp_prompt(path)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int8, torch.bool])
def test_non_float_dtype(tmp_path: Path, dtype: torch.dtype) -> None:
    path = write_st(tmp_path / "p.safetensors", {"ctx": torch.ones(4, 128, dtype=dtype)}, make_prompt().metadata())
    with pytest.raises(PromptShapeError, match=f"must be a floating-point tensor, got {dtype}"):
        fpp_init.load_fpp_prompt(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_inf(tmp_path: Path, value: float) -> None:
    prompt = make_prompt()
    ctx = prompt.ctx.clone()
    ctx[1, 3] = value
    path = write_st(tmp_path / "p.safetensors", {"ctx": ctx}, prompt.metadata())
    with pytest.raises(PromptShapeError, match="NaN or Inf"):
        fpp_init.load_fpp_prompt(path)


def test_missing_metadata(tmp_path: Path) -> None:
    path = write_st(tmp_path / "raw.safetensors", {"ctx": torch.zeros(4, 8)}, None)
    with pytest.raises(PromptFormatError, match=r"no fpp-init metadata.*FPPPrompt\(ctx=tensor"):
        fpp_init.load_fpp_prompt(path)
    other = write_st(tmp_path / "other.safetensors", {"ctx": torch.zeros(4, 8)}, {"format": "pt"})
    with pytest.raises(PromptFormatError, match="no fpp-init metadata"):
        fpp_init.load_fpp_prompt(other)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"classnames": "[not json"}, "'classnames' is not valid JSON"),
        ({"classnames": '["a", 3]'}, r"classnames\[1\] is int \(3\), not a string"),
        ({"config": "[1, 2]"}, "config must be a dict"),
        ({"final_losses": '{"loss": "low"}'}, "final_losses must map names to finite numbers"),
        ({"final_losses": '{"loss": NaN}'}, "final_losses must map names to finite numbers"),
        ({"n_ctx": "5"}, "n_ctx=5 but the 'ctx' tensor has 4"),
        ({"width": "64"}, "width=64 but the 'ctx' tensor has 128"),
        ({"class_agnostic": '"yes"'}, "class_agnostic must be True or False"),
        ({"class_agnostic": "0"}, "class_agnostic must be True or False"),
        ({"num_classes": '"many"'}, "num_classes must be an int"),
        ({"num_classes": "0"}, r"num_classes must be an int in \[1, "),
        (
            {"classnames": '["a", "b"]', "num_classes": "3", "class_agnostic": "false"},
            "2 class names but num_classes=3",
        ),
        ({"classnames": '["a", "b"]', "num_classes": "2"}, "class-agnostic FPPPrompt has no class names"),
        ({"template": None, "backbone": None}, None),
        ({"fpp_format_version": "one"}, "missing or malformed fpp_format_version 'one'"),
        ({"fpp_format_version": None}, "missing or malformed fpp_format_version None"),
        ({"fpp_format_version": "0"}, "invalid fpp_format_version 0"),
    ],
)
def test_malformed_metadata(tmp_path: Path, change: dict[str, str | None], match: str) -> None:
    prompt = make_prompt()
    meta = prompt.metadata()
    for key, value in change.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    path = write_st(tmp_path / "p.safetensors", {"ctx": prompt.ctx}, meta)
    if match is None:  # optional fields may be absent
        assert fpp_init.load_fpp_prompt(path).template is None
        return
    with pytest.raises(PromptFormatError, match=match) as info:
        fpp_init.load_fpp_prompt(path)
    assert str(path) in str(info.value)


def test_newer_format_version(tmp_path: Path) -> None:
    prompt = make_prompt()
    path = write_st(tmp_path / "p.safetensors", {"ctx": prompt.ctx}, {**prompt.metadata(), "fpp_format_version": "2"})
    with pytest.raises(PromptVersionError, match=r"version 2, newer .*\(1\); upgrade fpp-init"):
        fpp_init.load_fpp_prompt(path)


@pytest.mark.parametrize("keep", [0, 4, 9, 40, -1, -100])
def test_truncated(tmp_path: Path, keep: int) -> None:
    data = make_prompt().save(tmp_path / "full.safetensors").read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:keep])
    with pytest.raises(PromptFileError, match=r"truncated|corrupt") as info:
        fpp_init.load_fpp_prompt(cut)
    assert not isinstance(info.value, PickleFileError)


def test_corrupt_header_and_garbage(tmp_path: Path) -> None:
    data = bytearray(make_prompt().save(tmp_path / "full.safetensors").read_bytes())
    data[9:15] = b"\xff\xfe!!@@"
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(PromptFileError, match="corrupt"):
        fpp_init.load_fpp_prompt(bad)
    text = tmp_path / "notes.safetensors"
    text.write_text("hello, this is not a tensor file at all")
    with pytest.raises(PromptFileError, match="truncated or not a safetensors file"):
        fpp_init.load_fpp_prompt(text)
    wrong_offsets = bytearray(make_prompt().save(tmp_path / "w.safetensors").read_bytes())
    n = int.from_bytes(wrong_offsets[:8], "little")
    header = json.loads(wrong_offsets[8 : 8 + n])
    header["ctx"]["data_offsets"] = [0, 12]
    raw = json.dumps(header).encode()
    raw += b" " * (n - len(raw)) if len(raw) <= n else b""
    bad2 = tmp_path / "offsets.safetensors"
    bad2.write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(wrong_offsets[8 + n :]))
    with pytest.raises(PromptFileError, match="corrupt or truncated"):
        fpp_init.load_fpp_prompt(bad2)


def test_not_found_and_directory(tmp_path: Path) -> None:
    with pytest.raises(PromptFileError, match="not found"):
        fpp_init.load_fpp_prompt(tmp_path / "nope.safetensors")
    with pytest.raises(PromptFileError, match="is a folder"):
        fpp_init.load_fpp_prompt(tmp_path)
    with pytest.raises(PromptFileError, match=r"use hf://someone/repo/f\.safetensors"):
        fpp_init.load_fpp_prompt("someone/repo/f.safetensors")


# -- pickles -----------------------------------------------------------------------------


def _torch_save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("layout", ["coop", "dict", "tensor"])
def test_pickle_refused_then_allowed(tmp_path: Path, layout: str) -> None:
    ctx = make_prompt().ctx
    obj = {"coop": {"state_dict": {"ctx": ctx}, "epoch": 50}, "dict": {"ctx": ctx}, "tensor": ctx}[layout]
    path = _torch_save(obj, tmp_path / "ctx.pth")
    with pytest.raises(PickleFileError, match=r"pickle.*allow_pickle=True.*fpp-init export"):
        fpp_init.load_fpp_prompt(path)
    got = fpp_init.load_fpp_prompt(path, allow_pickle=True)
    assert torch.equal(got.ctx, ctx) and got.template is None and got.fingerprint is None


def test_pickle_detected_by_content_not_name(tmp_path: Path) -> None:
    path = _torch_save({"ctx": make_prompt().ctx}, tmp_path / "disguised.safetensors")
    with pytest.raises(PickleFileError):
        fpp_init.load_fpp_prompt(path)
    # legacy (non-zip) torch.save format
    legacy = tmp_path / "legacy.bin"
    torch.save({"ctx": make_prompt().ctx}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(PickleFileError):
        fpp_init.load_fpp_prompt(legacy)
    assert fpp_init.load_fpp_prompt(legacy, allow_pickle=True).n_ctx == 4


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.getcwd, ())  # type: ignore[return-value]


def test_pickle_with_objects_is_refused_even_when_allowed(tmp_path: Path) -> None:
    path = _torch_save({"ctx": torch.zeros(2, 4), "x": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(PickleFileError, match="weights_only=True"):
        fpp_init.load_fpp_prompt(path, allow_pickle=True)


def test_pickle_content_errors(tmp_path: Path) -> None:
    no_ctx = _torch_save({"state_dict": {"weight": torch.zeros(2, 4)}}, tmp_path / "a.pth")
    with pytest.raises(PromptFormatError, match="holds no 'ctx' tensor"):
        fpp_init.load_fpp_prompt(no_ctx, allow_pickle=True)
    class_specific = _torch_save({"state_dict": {"ctx": torch.zeros(10, 4, 16)}}, tmp_path / "b.pth")
    with pytest.raises(PromptShapeError, match="class-specific CoOp"):
        fpp_init.load_fpp_prompt(class_specific, allow_pickle=True)
    nan = _torch_save({"ctx": torch.full((2, 4), float("nan"))}, tmp_path / "c.pth")
    with pytest.raises(PromptShapeError, match="NaN"):
        fpp_init.load_fpp_prompt(nan, allow_pickle=True)
    truncated = tmp_path / "d.pth"
    buf = io.BytesIO()
    torch.save({"ctx": torch.zeros(2, 4)}, buf)
    truncated.write_bytes(buf.getvalue()[:100])
    with pytest.raises(PickleFileError, match="corrupt, truncated"):
        fpp_init.load_fpp_prompt(truncated, allow_pickle=True)


# -- expectations ------------------------------------------------------------------------


def test_expectations_pass_and_fail(tmp_path: Path) -> None:
    path = make_prompt().save(tmp_path / "p.safetensors")
    ok = fpp_init.load_fpp_prompt(path, n_ctx=4, width=128, backbone="vit-b/16", fingerprint="00ff00ff00ff00ff")
    assert ok.n_ctx == 4
    with pytest.raises(PromptMismatchError, match=r"n_ctx=4 .* but 16 were expected"):
        fpp_init.load_fpp_prompt(path, n_ctx=16)
    with pytest.raises(PromptMismatchError, match="width 128 but 512 was expected"):
        fpp_init.load_fpp_prompt(path, width=512)
    with pytest.raises(PromptMismatchError, match=r"backbone 'ViT-B/16' but 'RN50' was expected"):
        fpp_init.load_fpp_prompt(path, backbone="RN50")
    with pytest.raises(PromptMismatchError, match=r"'00ff00ff00ff00ff'.*'1234'"):
        fpp_init.load_fpp_prompt(path, fingerprint="1234")
    bare = FPPPrompt(ctx=torch.zeros(4, 128), template=None)
    with pytest.raises(PromptMismatchError, match="records no text-tower fingerprint"):
        fpp_init.load_fpp_prompt(bare, fingerprint="1234")


def test_expectation_against_model(tmp_path: Path, tiny_clip: torch.nn.Module) -> None:
    fp = fpp_init.fingerprint_model(tiny_clip)
    good = make_prompt(fingerprint=fp).save(tmp_path / "good.safetensors")
    assert fpp_init.load_fpp_prompt(good, model=tiny_clip).fingerprint == fp
    other = make_prompt().save(tmp_path / "other.safetensors")
    with pytest.raises(PromptMismatchError, match=f"'00ff00ff00ff00ff'.*'{fp}'"):
        fpp_init.load_fpp_prompt(other, model=tiny_clip)
    narrow = make_prompt(width=64, fingerprint=fp).save(tmp_path / "narrow.safetensors")
    with pytest.raises(PromptMismatchError, match="width 64 but 128 was expected"):
        fpp_init.load_fpp_prompt(narrow, model=tiny_clip)
    with pytest.raises(PromptMismatchError, match="was given but the model's is"):
        fpp_init.load_fpp_prompt(good, model=tiny_clip, fingerprint="1234")
