"""Bad input to every public entry point: one FPPError subclass per mistake, a message that says what
was wrong, and nothing written or changed (files, cache, model, global RNG)."""

from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from _refused import LONG_NAME, LONG_PATH, refused_folder, unprivileged
from helpers import build_tiny_clip, make_prompt
from standins import get_coop

import fpp_init
from fpp_init import FPPConfig, FPPError, FPPPrompt, build_zoo, metrics
from fpp_init._zoospec import load_zoo_spec
from fpp_init.errors import (
    ClassNameError,
    ConfigError,
    MetricInputError,
    ModelLoadError,
    NonFiniteError,
    OutputError,
    PromptFileError,
    PromptShapeError,
    TemplateError,
)

NAMES = ["banded", "blotchy"]


def _model_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in model.state_dict().items():
        h.update(name.encode() + p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture
def untouched(tmp_path: Path, tiny_clip: torch.nn.Module) -> Iterator[Path]:
    """A working folder; after the test, it, the prompt cache, the model and the global RNG are as before."""
    cache = Path(os.environ["FPP_INIT_CACHE"])
    before = (sorted(os.listdir(tmp_path)), sorted(os.listdir(cache)) if cache.exists() else [])
    model_before = _model_digest(tiny_clip)
    grads = {n: p.requires_grad for n, p in tiny_clip.named_parameters()}
    rng = torch.get_rng_state()
    yield tmp_path
    assert (sorted(os.listdir(tmp_path)), sorted(os.listdir(cache)) if cache.exists() else []) == before
    assert _model_digest(tiny_clip) == model_before
    assert {n: p.requires_grad for n, p in tiny_clip.named_parameters()} == grads
    assert torch.equal(torch.get_rng_state(), rng)


def run(model: Any, names: Any = NAMES, **kw: Any) -> FPPPrompt:
    kw.setdefault("steps", 1)
    kw.setdefault("progress", False)
    kw.setdefault("cache", True)
    return fpp_init.pretrain_flat_prompt(model, names, **kw)


# -- pretrain_flat_prompt ------------------------------------------------------------------------
PRETRAIN_CASES: list[tuple[dict[str, Any], type[Exception], str]] = [
    # class names
    ({"names": []}, ClassNameError, "empty"),
    ({"names": "banded"}, ClassNameError, "wrap a single name in a list"),
    ({"names": ["banded", 3]}, ClassNameError, r"classnames\[1\] is int"),
    ({"names": ["banded", "  "]}, ClassNameError, r"classnames\[1\] is empty or blank"),
    ({"names": None}, ClassNameError, "classnames is required"),
    (
        {"names": ["cat", "dog", "cat", "Dog"]},
        ClassNameError,
        r"classnames: 'cat' \(classnames\[0\] and classnames\[2\]\) is given more than once; name each class once",
    ),
    ({"names": ["word " * 80]}, ClassNameError, r"too long: its prompt .* takes 8[0-9] tokens .* context length is 77"),
    # templates
    ({"template": "a photo of a [CLS]."}, TemplateError, r"\[CLS\].*only the class at the end"),
    ({"template": "a photo of a {}"}, TemplateError, "only the class at the end"),
    ({"template": ""}, TemplateError, "non-empty string"),
    ({"template": "   "}, TemplateError, "non-empty string"),
    ({"template": 3}, TemplateError, "non-empty string"),
    ({"template": "\ufeff"}, TemplateError, "gives no tokens"),
    # options
    ({"steps": -1}, ConfigError, r"steps must be an int in \[1, "),
    ({"steps": 0}, ConfigError, r"steps must be an int in \[1, "),
    ({"steps": 2**70}, ConfigError, r"steps must be an int in \[1, 1000000000\]"),
    ({"steps": 2.5}, ConfigError, "steps must be an int"),
    ({"steps": True}, ConfigError, "steps must be an int"),
    ({"seed": 2**70}, ConfigError, r"seed must be an int in \[0, "),
    ({"seed": -1}, ConfigError, r"seed must be an int in \[0, "),
    ({"lr": 0}, ConfigError, "lr must be a finite number > 0"),
    ({"lr": float("inf")}, ConfigError, "lr must be a finite number"),
    ({"lr": 1e39}, ConfigError, r"lr must be a finite number of magnitude <= 3.4e\+38 \(fp32\), got 1e\+39"),
    ({"lr": 10**400}, ConfigError, "lr must be a finite number of magnitude .* got an int of about 401 digits"),
    ({"init_std": 2**200}, ConfigError, "init_std must be a finite number of magnitude"),
    ({"steps": 10**4000}, ConfigError, r"steps must be an int in \[1, 1000000000\], got an int of about 4001 digits"),
    ({"ctx_noise": -0.1}, ConfigError, "ctx_noise must be a finite number >= 0"),
    ({"cls_noise": float("nan")}, ConfigError, "cls_noise must be a finite number"),
    ({"num_noise": 0}, ConfigError, "num_noise must be an int in"),
    ({"init": "zeros"}, ConfigError, "init must be one of 'random', 'predefined'"),
    ({"autocast": True}, ConfigError, "autocast must be one of"),
    ({"flat_weight": -1.0}, ConfigError, "flat_weight must be a finite number >= 0"),
    ({"min_lr": 1.0}, ConfigError, r"min_lr \(1.0\) must not exceed lr"),
    ({"share_prefix": 1}, ConfigError, "share_prefix must be True or False"),
    ({"threads": 0}, ConfigError, "threads must be an int in"),
    ({"dist_timeout": 0}, ConfigError, "dist_timeout must be a finite number > 0"),
    ({"dist_timeout": 1e9}, ConfigError, "dist_timeout must be a finite number <= 604800"),
    ({"dist_timeout": "60"}, ConfigError, "dist_timeout must be a finite number"),
    ({"stepz": 3}, ConfigError, r"unknown FPP option\(s\) \['stepz'\]"),
    ({"config": "x"}, ConfigError, "config must be an FPPConfig"),
    ({"config": {"stepz": 2}}, ConfigError, r"unknown FPP option\(s\) \['stepz'\]"),
    ({"cache": 1}, ConfigError, "cache must be True, False or a folder path"),
    ({"progress": "no"}, ConfigError, "progress must be True or False"),
    ({"checkpoint_every": 0}, ConfigError, "checkpoint_every must be an int >= 1"),
    # class options
    ({"class_agnostic": True}, ConfigError, "either classnames or class_agnostic"),
    ({"names": None, "class_agnostic": True, "num_classes": 0}, ConfigError, r"num_classes must be an int in \[1, "),
    ({"num_classes": 3}, ConfigError, "only for class_agnostic"),
    ({"class_agnostic": "yes", "names": None}, ConfigError, "class_agnostic must be True or False"),
    # context tensors: one class for every bad tensor, wherever it enters
    ({"predefined_ctx": torch.zeros(4, 512)}, PromptShapeError, "width 512 but the model's text tower has width 128"),
    ({"predefined_ctx": torch.zeros(4)}, PromptShapeError, r"shape \[n_ctx, D\], got \(4,\)"),
    ({"predefined_ctx": torch.zeros(4, 128, dtype=torch.long)}, PromptShapeError, "floating-point"),
    ({"predefined_ctx": torch.full((4, 128), float("nan"))}, PromptShapeError, "NaN or Inf"),
    ({"predefined_ctx": torch.zeros(0, 128)}, PromptShapeError, "is empty"),
    ({"predefined_ctx": [[0.0] * 128]}, PromptShapeError, "must be a torch.Tensor"),
    ({"init_ctx": torch.zeros(3, 128)}, PromptShapeError, "has 3 context vectors, expected 4"),
    ({"init_ctx": torch.full((4, 128), float("inf"))}, PromptShapeError, "init_ctx contains NaN or Inf"),
    # devices
    ({"device": "bogus"}, ConfigError, r"device 'bogus' is not a device name; use one of \['cpu'"),
    ({"device": "cuda:x"}, ConfigError, r"device 'cuda:x' is not a device name"),
    ({"device": 3.5}, ConfigError, "device must be a device name"),
]


@pytest.mark.parametrize(("case", "error", "match"), PRETRAIN_CASES, ids=[f"{c}"[:80] for c, _, _ in PRETRAIN_CASES])
def test_pretrain_bad_input(
    tiny_clip: torch.nn.Module, untouched: Path, case: dict[str, Any], error: type[Exception], match: str
) -> None:
    kw = dict(case)
    names = kw.pop("names", NAMES)
    with pytest.raises(error, match=match) as info:
        run(tiny_clip, names, **kw)
    assert isinstance(info.value, fpp_init.FPPError)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("model", "error", "match"),
    [
        ("ViT-X/99", ModelLoadError, r"unknown CLIP model 'ViT-X/99'; use one of .*ViT-B/16.*open_clip:"),
        ("./nope.pt", ModelLoadError, "checkpoint not found"),
        ("", ConfigError, "model must not be an empty string"),
        (torch.nn.Linear(2, 2), ModelLoadError, "expected a CLIP model"),
        (42, ModelLoadError, "got int"),
    ],
)
def test_bad_models(untouched: Path, model: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        run(model)


def test_tpt_model_given_to_pretrain_is_pointed_to_apply(tiny_clip: torch.nn.Module) -> None:
    with pytest.raises(ModelLoadError, match=r"TPT-family model: use fpp_init.apply\(model\)"):
        run(get_coop(tiny_clip, NAMES))


def test_unreadable_checkpoints(tmp_path: Path, untouched: Path) -> None:
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"this is not a checkpoint" * 10)
    wrong = tmp_path / "wrong.pt"
    torch.save({"weight": torch.zeros(3)}, wrong)
    for path in (bad, wrong):
        with pytest.raises(ModelLoadError, match=r"could not read CLIP checkpoint .*\.pt") as info:
            run(str(path))
        assert "\n" not in str(info.value)  # torch's multi-line text is not embedded
    bad.unlink()
    wrong.unlink()


def test_non_clip_text_transformer(tiny_clip: torch.nn.Module) -> None:
    model = copy.deepcopy(tiny_clip)
    model.transformer = torch.nn.Sequential(torch.nn.Identity())
    with pytest.raises(ModelLoadError, match="not an OpenAI-CLIP-style causal transformer"):
        run(model)


def test_offline_download_says_pass_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # the real clip.load download path, with the network unreachable and an empty ~/.cache/clip
    import urllib.request

    monkeypatch.setenv("HOME", str(tmp_path))

    def refuse(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(ModelLoadError, match=r"could not download CLIP 'ViT-B/16'.*--weights PATH"):
        fpp_init.pretrain_flat_prompt("ViT-B/16", ["a"], device="cpu", progress=False, steps=1)


# -- non-finite results are never returned, cached or installed -----------------------------------
def test_nan_weights_stop_before_any_step(tiny_clip: torch.nn.Module, untouched: Path) -> None:
    broken = copy.deepcopy(tiny_clip)
    with torch.no_grad():
        broken.transformer.resblocks[0].mlp.c_fc.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"NaN/Inf features.*weights"):
        run(broken, steps=5)


def test_sharpness_of_a_model_with_nan_weights(tiny_clip: torch.nn.Module) -> None:
    broken = copy.deepcopy(tiny_clip)
    with torch.no_grad():
        broken.ln_final.bias[0] = float("inf")
    with pytest.raises(NonFiniteError, match="NaN/Inf features"):
        fpp_init.sharpness(broken, "a photo of a", NAMES, progress=False)


def test_diverging_learning_rate_names_the_step(tiny_clip: torch.nn.Module, untouched: Path) -> None:
    with pytest.raises(NonFiniteError, match=r"diverged: .* at step \d+ of 30 \(lr=1e\+20\); lower lr"):
        run(tiny_clip, steps=30, lr=1e20, min_lr=0.0)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"lr": 1e38}, r"the AdamW update overflows fp32 at step 1 of 3 \(lr=1e\+38"),
        ({"lr": 3.4e38, "weight_decay": 1.0}, "overflows fp32 at step 1 of 3"),
        ({"lr": 1e30, "weight_decay": 1e10}, r"became NaN/Inf at step \d of 3"),
        ({"flat_weight": 3e38}, r"became NaN/Inf at step \d of 3"),
        ({"ctx_noise": 3e38}, r"became NaN/Inf at step 1 of 3 .*extreme ctx_noise"),
        ({"cls_noise": 1e30}, r"became NaN/Inf at step 1 of 3"),
        ({"init_std": 3e38}, r"became NaN/Inf at step 1 of 3"),
    ],
)
def test_numbers_that_overflow_fp32_are_non_finite_errors(
    tiny_clip: torch.nn.Module, untouched: Path, options: dict[str, float], match: str
) -> None:
    with pytest.raises(NonFiniteError, match=match) as info:
        run(tiny_clip, steps=3, min_lr=0.0, **options)
    assert "Nothing was returned or saved" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "options", [{"factors": [3e38]}, {"span": 3e38, "landscape": True}, {"ctx_noise": 3e38}, {"cls_noise": 1e30}]
)
def test_sharpness_noise_that_overflows_fp32(tiny_clip: torch.nn.Module, options: dict[str, Any]) -> None:
    with pytest.raises(NonFiniteError, match=r"became NaN/Inf .* too large for fp32"):
        fpp_init.sharpness(tiny_clip, "a photo of a", NAMES, progress=False, **options)


def test_live_model_with_nan_weights_is_not_installed(tiny_clip: torch.nn.Module) -> None:
    broken = copy.deepcopy(tiny_clip)
    with torch.no_grad():
        broken.ln_final.weight[0] = float("nan")
    model = get_coop(broken, NAMES)
    before = model.prompt_learner.ctx.detach().clone()
    with pytest.raises(NonFiniteError):
        fpp_init.apply(model, steps=2, progress=False)
    assert torch.equal(model.prompt_learner.ctx.detach(), before)
    assert "reset_classnames" not in model.prompt_learner.__dict__


def test_fpp_prompt_enforces_its_invariants() -> None:
    ctx = torch.zeros(4, 8)
    with pytest.raises(PromptShapeError, match=r"FPPPrompt.ctx contains NaN or Inf"):
        FPPPrompt(ctx=torch.full((4, 8), float("nan")))
    with pytest.raises(PromptShapeError, match=r"FPPPrompt.ctx must have shape"):
        FPPPrompt(ctx=torch.zeros(2, 4, 8))
    with pytest.raises(ClassNameError, match=r"FPPPrompt.classnames\[1\] is int"):
        FPPPrompt(ctx=ctx, classnames=["a", 2])  # type: ignore[list-item]
    with pytest.raises(ClassNameError, match="lists 2 class names but num_classes=3"):
        FPPPrompt(ctx=ctx, classnames=["a", "b"], num_classes=3)
    with pytest.raises(ConfigError, match=r"FPPPrompt.template must be a string or None"):
        FPPPrompt(ctx=ctx, template=5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="final_losses must map names to finite numbers"):
        FPPPrompt(ctx=ctx, final_losses={"loss": float("nan")})
    with pytest.raises(ConfigError, match="class_agnostic must be True or False"):
        FPPPrompt(ctx=ctx, class_agnostic=0)  # type: ignore[arg-type]
    # a prompt made invalid after construction still cannot be written
    prompt = FPPPrompt(ctx=ctx.clone())
    prompt.ctx[0, 0] = float("inf")
    with pytest.raises(PromptShapeError, match="NaN or Inf"):
        fpp_init.artifacts.fpp_prompt.prompt_bytes(prompt)


def _edited(kind: str) -> FPPPrompt:
    """A prompt valid when made, whose ctx was changed in place afterwards."""
    prompt = make_prompt()
    if kind == "one Inf":
        prompt.ctx[1, 7] = float("inf")  # 1 of 512 values
    elif kind == "all NaN":
        prompt.ctx.fill_(float("nan"))
    else:
        prompt.ctx = prompt.ctx[0]  # a 1-D tensor
    return prompt


EDITED = {
    "one Inf": "ctx contains NaN or Inf|source contains NaN or Inf",
    "all NaN": "contains NaN or Inf",
    "1-D": r"shape \[n_ctx, D\]",
}
EDITED_USES: list[tuple[str, Callable[[FPPPrompt, Path, torch.nn.Module], object]]] = [
    ("save", lambda p, d, clip: p.save(d / "p.safetensors")),
    ("save_fpp_prompt", lambda p, d, clip: fpp_init.save_fpp_prompt(p, d / "p.safetensors")),
    ("export_coop", lambda p, d, clip: fpp_init.export_coop(p, d / "p.pth")),
    ("build_hub_folder", lambda p, d, clip: fpp_init.artifacts.build_hub_folder([make_prompt(seed=1), p], d / "hub")),
    ("push_fpp_prompt", lambda p, d, clip: fpp_init.push_fpp_prompt(p, "someone/prompts")),
    ("load_fpp_prompt", lambda p, d, clip: fpp_init.load_fpp_prompt(p)),
    ("apply", lambda p, d, clip: fpp_init.apply(get_coop(clip, NAMES), p, strict=False)),
    ("sharpness", lambda p, d, clip: fpp_init.sharpness(clip, p, NAMES, progress=False)),
]


@pytest.mark.parametrize("kind", list(EDITED))
@pytest.mark.parametrize(("use", "call"), EDITED_USES, ids=[u for u, _ in EDITED_USES])
def test_a_ctx_changed_after_construction_is_checked_where_it_is_used(
    tiny_clip: torch.nn.Module, untouched: Path, kind: str, use: str, call: Callable[..., object]
) -> None:
    with pytest.raises(PromptShapeError, match=EDITED[kind]):
        call(_edited(kind), untouched, tiny_clip)


def test_an_installed_prompt_changed_later_is_not_installed_again(tiny_clip: torch.nn.Module) -> None:
    model = get_coop(tiny_clip, NAMES)
    prompt = make_prompt()
    fpp_init.apply(model, prompt, strict=False)
    installed = model.prompt_learner.ctx.detach().clone()
    prompt.ctx[0, 0] = float("inf")
    with pytest.raises(PromptShapeError, match="the prompt's ctx contains NaN or Inf"):
        model.reset_classnames(["cracked", "bumpy"], "ViT-B/16")
    assert torch.equal(model.prompt_learner.ctx.detach(), installed)  # the Inf never reached the model


# -- load_fpp_prompt -------------------------------------------------------------------------------
LOAD_CASES: list[tuple[Any, dict[str, Any], type[Exception], str]] = [
    (None, {}, ConfigError, "source must be a prompt file path or an hf:// reference, got None"),
    (3, {}, ConfigError, "source must be a prompt file path"),
    ("p.safetensors", {"revision": 123}, ConfigError, "revision must be a non-empty string, got 123"),
    ("hf://o/r/p.safetensors", {"cache_dir": 123}, ConfigError, "cache_dir must be a file path"),
    ("p.safetensors", {"dtype": "float17"}, ConfigError, "dtype must be a floating-point torch dtype"),
    ("p.safetensors", {"dtype": torch.int64}, ConfigError, "dtype must be a floating-point"),
    ("p.safetensors", {"device": "bogus"}, ConfigError, "device 'bogus' is not a device name"),
    ("p.safetensors", {"n_ctx": "4"}, ConfigError, "n_ctx must be an int"),
    ("p.safetensors", {"width": 0}, ConfigError, "width must be an int >= 1"),
    ("p.safetensors", {"allow_pickle": "yes"}, ConfigError, "allow_pickle must be True or False"),
    ("p.safetensors", {"local_files_only": 1}, ConfigError, "local_files_only must be True or False"),
    ("p.safetensors", {"token": 5}, ConfigError, "token must be a string"),
]


@pytest.mark.parametrize(("source", "kw", "error", "match"), LOAD_CASES)
def test_load_bad_arguments(
    untouched: Path, source: Any, kw: dict[str, Any], error: type[Exception], match: str
) -> None:
    path = make_prompt().save(untouched / "p.safetensors")
    try:
        if isinstance(source, str) and not source.startswith("hf://"):
            source = str(path)
        with pytest.raises(error, match=match):
            fpp_init.load_fpp_prompt(source, **kw)
    finally:
        path.unlink()


def test_load_accepts_dtype_names(tmp_path: Path) -> None:
    path = make_prompt().save(tmp_path / "p.safetensors")
    assert fpp_init.load_fpp_prompt(path, dtype="float16").ctx.dtype == torch.float16
    assert fpp_init.load_fpp_prompt(path, dtype="bf16").ctx.dtype == torch.bfloat16


def test_fifo_and_devices_are_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)  # opening it for reading would block forever
    with pytest.raises(PromptFileError, match="is a FIFO; only regular files are read"):
        fpp_init.load_fpp_prompt(fifo)
    with pytest.raises(PromptFileError, match="is a device; only regular files are read"):
        fpp_init.load_fpp_prompt("/dev/zero")  # would read until memory runs out
    big = tmp_path / "big.safetensors"
    with open(big, "wb") as fh:
        fh.truncate(65 * 2**20)
    with pytest.raises(PromptFileError, match="is larger than 67108864 bytes"):
        fpp_init.load_fpp_prompt(big)


# -- apply -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"source": 3}, ConfigError, "source must be an FPPPrompt, a \\[n_ctx, D\\] tensor"),
        ({"source": torch.full((4, 128), float("nan"))}, PromptShapeError, "source contains NaN or Inf"),
        ({"device": "cuda:7"}, ConfigError, "device 'cuda:7'"),
        ({"cache": "yes please", "progress": 2}, ConfigError, "progress must be True or False"),
        ({"strict": None}, ConfigError, "strict must be True or False"),
        ({"config": [1]}, ConfigError, "config must be an FPPConfig"),
        ({"class_agnostic": True}, ConfigError, "pretrain one on the same CLIP weights"),
    ],
)
def test_apply_bad_arguments(
    tiny_clip: torch.nn.Module, kw: dict[str, Any], error: type[Exception], match: str
) -> None:
    model = get_coop(tiny_clip, NAMES)
    before = model.prompt_learner.ctx.detach().clone()
    with pytest.raises(error, match=match):
        fpp_init.apply(model, **kw)
    assert torch.equal(model.prompt_learner.ctx.detach(), before)
    assert "reset_classnames" not in model.prompt_learner.__dict__


# -- sharpness, metrics, small public helpers --------------------------------------------------------
SHARPNESS_CASES: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"source": None}, ConfigError, "pass the prompt to measure"),
    ({"source": 3}, ConfigError, "source must be a template string"),
    ({"factors": [-1]}, ConfigError, "factors must be a finite number >= 0"),
    ({"factors": "0,1"}, ConfigError, "factors must be a non-empty list"),
    ({"draws": 0}, ConfigError, "draws must be an int in"),
    ({"direction_norm": "unit"}, ConfigError, "direction_norm must be one of 'noise', 'filter'"),
    ({"span": 0}, ConfigError, "span must be a finite number > 0"),
    ({"points2d": -1}, ConfigError, "points2d must be an int in"),
    ({"ctx_noise": float("nan")}, ConfigError, "ctx_noise must be a finite number"),
    ({"template": "a photo of a", "predefined_ctx": torch.zeros(4, 128)}, ConfigError, "not both"),
    ({"label": 3}, ConfigError, "label must be a non-empty string"),
    ({"device": "cuda"}, ConfigError, "device 'cuda' is not available|device=.cuda. but the model is on cpu"),
]


@pytest.mark.parametrize(("kw", "error", "match"), SHARPNESS_CASES, ids=[str(c) for c, _, _ in SHARPNESS_CASES])
def test_sharpness_bad_arguments(
    tiny_clip: torch.nn.Module, untouched: Path, kw: dict[str, Any], error: type[Exception], match: str
) -> None:
    kw = {"source": "a photo of a", **kw}
    with pytest.raises(error, match=match):
        fpp_init.sharpness(tiny_clip, classnames=NAMES, progress=False, **kw)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: metrics.ece([[0.6, 0.4]], [0], n_bins=10**10), r"n_bins must be an int in \[1, 1000000\]"),
        (lambda: metrics.ece([[0.6, 0.4]], [0], n_bins=True), "n_bins must be an int"),
        (lambda: metrics.ece([[0.6, 0.4]], [0], from_logits="no"), "from_logits must be True or False"),
        (lambda: metrics.calibration_report([[0.6, 0.4]], [2]), "out of range"),
    ],
)
def test_metrics_bad_arguments(call: Callable[[], object], match: str) -> None:
    with pytest.raises(MetricInputError, match=match):
        call()


def test_config_validates_on_construction() -> None:
    with pytest.raises(ConfigError):
        FPPConfig(steps=-5)
    assert FPPConfig().resolved_flat_weight(47) == pytest.approx(1 + 15 / 47)
    assert FPPConfig(flat_weight=1.25).resolved_flat_weight(1000) == 1.25
    assert fpp_init.pretrain_flat_prompt.__module__ == "fpp_init.api._pretrain"


def test_default_filename_and_export_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="default_filename needs an FPPPrompt"):
        fpp_init.artifacts.default_filename("x")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="epoch must be an int >= 0"):
        fpp_init.export_coop(make_prompt(), tmp_path / "x.pth", epoch=-1)
    with pytest.raises(ConfigError, match="out must be a file path"):
        fpp_init.export_coop(make_prompt(), None)  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_other_width_model_refuses_prompt(tmp_path: Path) -> None:
    model = build_tiny_clip(64, layers=1)
    with pytest.raises(fpp_init.errors.PromptMismatchError, match="width 128 but 64 was expected"):
        fpp_init.load_fpp_prompt(make_prompt(), model=model)


def test_figure_options_are_checked_before_drawing(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    (tmp_path / "dir").mkdir()
    with pytest.raises(fpp_init.errors.OutputError, match="existing folder"):
        metrics.reliability_diagram([[0.6, 0.4]], [0], path=tmp_path / "dir")
    with pytest.raises(ConfigError, match="title must be a non-empty string"):
        metrics.reliability_diagram([[0.6, 0.4]], [0], title=3)  # type: ignore[arg-type]
    from fpp_init.plotting import plot_sharpness

    with pytest.raises(ConfigError, match="dpi must be an int in"):
        plot_sharpness([object()], dpi=0)
    assert os.listdir(tmp_path) == ["dir"]


def test_class_names_only_case_tells_apart_warn(tiny_clip: torch.nn.Module) -> None:
    with pytest.warns(fpp_init.errors.ClassNameWarning) as caught:
        prompt = run(tiny_clip, ["dog", "cat", "Dog", "willow_tree", "willow tree"], cache=False)
    assert prompt.classnames == ["dog", "cat", "Dog", "willow_tree", "willow tree"]  # kept as given
    [warning] = [w for w in caught if w.category is fpp_init.errors.ClassNameWarning]
    text = str(warning.message)
    assert "'dog' (classnames[0]) and 'Dog' (classnames[2])" in text
    assert "'willow_tree' (classnames[3]) and 'willow tree' (classnames[4])" in text
    assert "differ only in case, spaces or underscores" in text


def test_repeated_class_names_everywhere(tiny_clip: torch.nn.Module, tmp_path: Path) -> None:
    """One validator, one class: pretrain, sharpness, a zoo class set; a live model's own set only warns."""
    from fpp_init._zoospec import load_zoo_spec

    with pytest.raises(ClassNameError, match=r"'cat' \(classnames\[0\] and classnames\[2\]\)"):
        fpp_init.sharpness(tiny_clip, "a photo of a", ["cat", "dog", "cat"], progress=False)
    (tmp_path / "pets.txt").write_text("cat\n\ndog\ncat\n")
    spec = {"backbones": ["ViT-B/16"], "classes": [str(tmp_path / "pets.txt")]}
    with pytest.raises(ClassNameError, match=r"class-name file '.*pets.txt': 'cat' \(line 1 and line 4\) is given"):
        load_zoo_spec(spec)
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(
        ClassNameError, match=r"'.*empty.txt' holds no class names.* \(or list \"agnostic\" in classes\)"
    ):
        load_zoo_spec({**spec, "classes": [str(tmp_path / "empty.txt")]})
    model = get_coop(tiny_clip, ["missile", "tank", "missile"])
    with pytest.warns(
        fpp_init.errors.ClassNameWarning, match=r"'missile' \(position 0 and position 2\) is given more than once"
    ):
        handle = fpp_init.apply(model, steps=1, progress=False)
    assert handle.prompt is not None and handle.prompt.classnames == ["missile", "tank", "missile"]
    handle.remove()


# -- paths the OS refuses, wherever a path enters -------------------------------------------------
def _coop_model(clip: torch.nn.Module) -> Any:
    return get_coop(clip, NAMES)


#: (entry point, call(path, clip, outputs folder), suffix of the path, error of an OS refusal,
#:  error of a path that cannot even be encoded)
PATH_READERS: list[tuple[str, Callable[..., object], str, type[Exception], type[Exception]]] = [
    ("load_fpp_prompt", lambda p, clip, out: fpp_init.load_fpp_prompt(p), ".safetensors", PromptFileError, ConfigError),
    ("apply", lambda p, clip, out: fpp_init.apply(_coop_model(clip), p), ".safetensors", PromptFileError, ConfigError),
    (
        "sharpness",
        lambda p, clip, out: fpp_init.sharpness(clip, p, NAMES, progress=False),
        ".safetensors",
        PromptFileError,
        ConfigError,
    ),
    (
        "export_coop",
        lambda p, clip, out: fpp_init.export_coop(p, out / "o.pth"),
        ".safetensors",
        PromptFileError,
        ConfigError,
    ),
    (
        "build_hub_folder",
        lambda p, clip, out: fpp_init.artifacts.build_hub_folder([p], out / "hub"),
        ".safetensors",
        PromptFileError,
        ConfigError,
    ),
    (
        "push_fpp_prompt",
        lambda p, clip, out: fpp_init.push_fpp_prompt(p, "someone/prompts"),
        ".safetensors",
        PromptFileError,
        ConfigError,
    ),
    (
        "pretrain model path",
        lambda p, clip, out: fpp_init.pretrain_flat_prompt(p, NAMES, steps=1, progress=False),
        ".pt",
        ModelLoadError,
        ModelLoadError,
    ),
    (
        "zoo spec",
        lambda p, clip, out: load_zoo_spec(p),
        ".toml",
        ConfigError,
        ConfigError,
    ),
    (
        "zoo class-set file",
        lambda p, clip, out: load_zoo_spec({"backbones": ["ViT-B/16"], "classes": [p]}),
        ".txt",
        ClassNameError,
        ClassNameError,
    ),
]

#: (entry point, call(path, clip), error of an OS refusal, error of an unencodable path)
PATH_WRITERS: list[tuple[str, Callable[..., object], type[Exception], type[Exception]]] = [
    ("save_fpp_prompt", lambda p, clip: fpp_init.save_fpp_prompt(make_prompt(), p), OutputError, ConfigError),
    ("export_coop out", lambda p, clip: fpp_init.export_coop(make_prompt(), p), OutputError, ConfigError),
    (
        "build_hub_folder folder",
        lambda p, clip: fpp_init.artifacts.build_hub_folder([make_prompt()], p),
        OutputError,
        ConfigError,
    ),
    (
        "pretrain checkpoint",
        lambda p, clip: fpp_init.pretrain_flat_prompt(clip, NAMES, steps=1, progress=False, checkpoint=p),
        OutputError,
        ConfigError,
    ),
    (
        "build_zoo out",
        lambda p, clip: build_zoo({"backbones": ["ViT-B/16"], "classes": ["agnostic"], "config": {"steps": 1}}, p),
        OutputError,
        ConfigError,
    ),
]

REFUSALS = {
    "mode-000 folder": "permission denied",
    "300-character name": "file name too long|name is too long",
    "5000-character path": "file name too long|name is too long",
    "lone surrogate": "cannot encode|cannot be encoded",
}


def _refused_path(kind: str, r: Any, suffix: str) -> str:
    if kind == "mode-000 folder":
        return str(r.locked / f"f{suffix}")
    if kind == "300-character name":
        return str(r.root / f"{LONG_NAME}{suffix}")
    if kind == "5000-character path":
        return str(r.root / LONG_PATH / f"f{suffix}")
    return str(r.root / f"\ud800{suffix}")


def _fill_locked(r: Any, tiny_ckpt: Path) -> None:
    """Real files behind the locked door: a prompt, a checkpoint, a spec, a class-set file."""
    make_prompt().save(r.locked / "f.safetensors")
    (r.locked / "f.pt").write_bytes(tiny_ckpt.read_bytes())
    (r.locked / "f.toml").write_text('backbones = ["ViT-B/16"]\nclasses = ["agnostic"]\n')
    (r.locked / "f.txt").write_text("banded\n")
    r.lock()


@pytest.mark.parametrize("kind", list(REFUSALS))
@pytest.mark.parametrize(
    ("entry", "call", "suffix", "os_error", "encode_error"), PATH_READERS, ids=[c[0] for c in PATH_READERS]
)
def test_paths_the_os_refuses_to_read(
    tiny_clip: torch.nn.Module,
    tiny_ckpt: Path,
    untouched: Path,
    kind: str,
    entry: str,
    call: Callable[..., object],
    suffix: str,
    os_error: type[Exception],
    encode_error: type[Exception],
) -> None:
    with refused_folder() as r:
        _fill_locked(r, tiny_ckpt)
        before = r.listing()
        path = _refused_path(kind, r, suffix)
        with unprivileged(), pytest.raises(FPPError) as info:
            call(path, tiny_clip, r.root)
        assert type(info.value) is (encode_error if kind == "lone surrogate" else os_error), info.value
        message = str(info.value)
        assert re.search(REFUSALS[kind], message) and "\n" not in message, message
        assert repr(path)[:60].strip("'") in message or path[:60] in message  # it names the path
        assert r.listing() == before


@pytest.mark.parametrize("kind", list(REFUSALS))
@pytest.mark.parametrize(("entry", "call", "os_error", "encode_error"), PATH_WRITERS, ids=[c[0] for c in PATH_WRITERS])
def test_paths_the_os_refuses_to_write(
    tiny_clip: torch.nn.Module,
    untouched: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    entry: str,
    call: Callable[..., object],
    os_error: type[Exception],
    encode_error: type[Exception],
) -> None:
    import fpp_init.api._pretrain as pretrain_module

    monkeypatch.setattr(pretrain_module, "optimize_flat_prompt", _no_work)
    with refused_folder() as r:
        r.lock()
        before = r.listing()
        path = _refused_path(kind, r, ".out")
        with unprivileged(), pytest.raises(FPPError) as info:
            call(path, tiny_clip)
        assert type(info.value) is (encode_error if kind == "lone surrogate" else os_error), info.value
        message = str(info.value)
        assert re.search(REFUSALS[kind], message) and "\n" not in message, message
        assert message.count("cannot write") <= 1, message
        assert r.listing() == before


def _no_work(*args: object, **kwargs: object) -> None:
    raise AssertionError("the work started although an output cannot be written")


def test_model_folders_and_checkpoints_the_os_refuses(untouched: Path) -> None:
    """A transformers folder whose files cannot be read, an OpenCLIP checkpoint behind a locked door."""
    pytest.importorskip("open_clip")
    with refused_folder() as r:
        model = r.root / "hf-model"
        model.mkdir()
        (model / "config.json").write_text("{}")
        os.chmod(model, 0)
        (r.locked / "ckpt.bin").write_bytes(b"x")
        r.lock()
        try:
            with unprivileged(), pytest.raises(ModelLoadError, match=r"cannot read model folder file .*config.json'"):
                fpp_init.pretrain_flat_prompt(str(model), NAMES, steps=1, progress=False)
            with (
                unprivileged(),
                pytest.raises(ModelLoadError, match=r"cannot read OpenCLIP checkpoint .*permission denied"),
            ):
                fpp_init.pretrain_flat_prompt(f"open_clip:ViT-B-32/{r.locked / 'ckpt.bin'}", NAMES, steps=1)
        finally:
            os.chmod(model, 0o755)
