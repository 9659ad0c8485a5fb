"""Bad input to pretrain_flat_prompt gets a specific FPPError with an actionable message."""

from __future__ import annotations

import pytest
import torch

import fpp_init
from fpp_init import (
    ClassNameError,
    ConfigError,
    FPPConfig,
    FPPError,
    ModelLoadError,
    PromptShapeError,
    TemplateError,
)


def run(model, names=("banded", "blotchy"), **kw):
    kw.setdefault("steps", 1)
    return fpp_init.pretrain_flat_prompt(model, names, progress=False, **kw)


@pytest.mark.parametrize(
    ("names", "match"),
    [
        ([], "empty"),
        ("banded", "wrap a single name in a list"),
        (["banded", 3], r"classnames\[1\] is int"),
        (["banded", "  "], r"classnames\[1\] is empty or blank"),
        (None, "classnames is required"),
        (["word " * 80], "too long: its prompt .* takes 8[0-9] tokens but the model's context length is 77"),
    ],
)
def test_bad_classnames(tiny_clip, names, match):
    with pytest.raises(ClassNameError, match=match):
        run(tiny_clip, names)


@pytest.mark.parametrize(
    ("template", "match"),
    [
        ("a photo of a [CLS].", r"\[CLS\].*only the class at the end"),
        ("a photo of a {}", "only the class at the end"),
        ("", "non-empty string"),
        ("   ", "non-empty string"),
    ],
)
def test_bad_templates(tiny_clip, template, match):
    with pytest.raises(TemplateError, match=match):
        run(tiny_clip, template=template)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"steps": -1}, "steps must be a non-negative int"),
        ({"ctx_noise": -0.1}, "ctx_noise must be a finite number >= 0"),
        ({"cls_noise": float("nan")}, "cls_noise must be a finite number >= 0"),
        ({"num_noise": 0}, "num_noise must be >= 1"),
        ({"init": "zeros"}, "init must be 'random' or 'predefined'"),
        ({"flat_weight": -1.0}, "flat_weight must be None or a finite number >= 0"),
        ({"min_lr": 1.0}, r"min_lr \(1.0\) must not exceed lr"),
        ({"stepz": 3}, r"unknown FPP option\(s\) \['stepz'\]"),
        ({"steps": 2.5}, "steps must be an int"),
    ],
)
def test_bad_config(tiny_clip, options, match):
    with pytest.raises(ConfigError, match=match):
        run(tiny_clip, **options)


def test_config_validates_on_construction():
    with pytest.raises(ConfigError):
        FPPConfig(steps=-5)
    assert FPPConfig().resolved_flat_weight(47) == pytest.approx(1 + 15 / 47)
    assert FPPConfig(flat_weight=1.25).resolved_flat_weight(1000) == 1.25


def test_class_options_conflict(tiny_clip):
    with pytest.raises(ConfigError, match="either classnames or class_agnostic"):
        fpp_init.pretrain_flat_prompt(tiny_clip, ["a"], class_agnostic=True, progress=False)
    with pytest.raises(ConfigError, match="num_classes must be a positive int"):
        fpp_init.pretrain_flat_prompt(tiny_clip, class_agnostic=True, num_classes=0, progress=False)
    with pytest.raises(ConfigError, match="only for class_agnostic"):
        fpp_init.pretrain_flat_prompt(tiny_clip, ["a"], num_classes=3, progress=False)


@pytest.mark.parametrize(
    ("ctx", "match"),
    [
        (torch.zeros(4, 512), "width 512 but the model's text tower has width 128"),
        (torch.zeros(4), r"shape \[n_ctx, 128\], got \(4,\)"),
        (torch.zeros(4, 128, dtype=torch.long), "floating-point"),
        (torch.full((4, 128), float("nan")), "NaN or Inf"),
        ([[0.0] * 128], "must be a torch.Tensor"),
    ],
)
def test_bad_context_tensors(tiny_clip, ctx, match):
    with pytest.raises(PromptShapeError, match=match):
        run(tiny_clip, predefined_ctx=ctx)


def test_init_ctx_must_match_n_ctx(tiny_clip):
    with pytest.raises(PromptShapeError, match="has 3 context vectors, expected 4"):
        run(tiny_clip, init_ctx=torch.zeros(3, 128))


def test_unknown_model_name():
    with pytest.raises(ModelLoadError, match=r"unknown CLIP model 'ViT-X/99'; use one of .*ViT-B/16"):
        run("ViT-X/99")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ModelLoadError, match="checkpoint not found"):
        run(str(tmp_path / "nope.pt"))


def test_unreadable_checkpoint(tmp_path):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(ModelLoadError, match=r"could not read CLIP checkpoint .*garbage.pt"):
        run(str(bad))
    wrong = tmp_path / "wrong.pt"
    torch.save({"weight": torch.zeros(3)}, wrong)
    with pytest.raises(ModelLoadError, match="could not read CLIP checkpoint"):
        run(str(wrong))


def test_not_a_clip_model():
    with pytest.raises(ModelLoadError, match="expected a CLIP model"):
        run(torch.nn.Linear(2, 2))


def test_offline_download_says_pass_weights(monkeypatch, tmp_path):
    # the real clip.load download path, with the network unreachable
    import urllib.request

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(ModelLoadError, match=r"could not download CLIP 'ViT-B/16'.*--weights PATH"):
        fpp_init.pretrain_flat_prompt("ViT-B/16", ["a"], device="cpu", progress=False, steps=1)


def test_all_errors_share_one_base():
    for cls in (ClassNameError, ConfigError, ModelLoadError, PromptShapeError, TemplateError):
        assert issubclass(cls, FPPError)


def test_non_clip_text_transformer(tiny_ckpt):
    from fpp_init._clip import load_clip_model

    model = load_clip_model(str(tiny_ckpt), "cpu")
    model.transformer = torch.nn.Sequential(torch.nn.Identity())
    with pytest.raises(ModelLoadError, match="not an OpenAI-CLIP-style causal transformer"):
        run(model)
