"""``fpp-init zoo``: a declarative spec becomes prompt files, a manifest and a model card; reruns do no work."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from helpers import build_tiny_clip
from huggingface_hub import ModelCard

import fpp_init
import fpp_init.api._pretrain as pretrain_module
from fpp_init import build_zoo
from fpp_init._zoospec import load_zoo_spec
from fpp_init.algorithm import optimizer as optimizer_module
from fpp_init.cli import main


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("zoo-spec")
    torch.save(build_tiny_clip(128, layers=1, seed=0).state_dict(), root / "tiny-a.pt")
    torch.save(build_tiny_clip(64, layers=1, seed=1).state_dict(), root / "tiny-b.pt")
    (root / "dtd.txt").write_text("banded\nblotchy\nbraided\n")
    path = root / "zoo.toml"
    path.write_text(
        'backbones = ["tiny-a.pt", { name = "tiny-b", model = "tiny-b.pt" }]\n'
        'classes = ["agnostic", "dtd.txt"]\n'
        "seeds = [3]\n"
        "num_classes = 5\n"
        "checkpoint_every = 1\n"
        "[config]\nsteps = 4\n"
    )
    return path


def _fail(*args: object, **kwargs: object) -> None:
    raise AssertionError("a finished job ran again")


def test_spec_expands_to_jobs(spec: Path) -> None:
    jobs, config, settings = load_zoo_spec(spec)
    assert [j.filename for j in jobs] == [
        "fpp_tiny-a_agnostic_seed3.safetensors",
        "fpp_tiny-a_dtd_seed3.safetensors",
        "fpp_tiny-b_agnostic_seed3.safetensors",
        "fpp_tiny-b_dtd_seed3.safetensors",
    ]
    assert config.steps == 4 and settings.num_classes == 5
    assert jobs[1].classnames == ("banded", "blotchy", "braided") and jobs[0].classnames is None
    assert jobs[0].model == str(spec.parent / "tiny-a.pt")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"backbones": []}, "'backbones' must be a non-empty list"),
        ({"seeds": [-1]}, r"seeds\[\] must be an int in"),
        ({"colours": 3}, r"unknown key\(s\) \['colours'\]"),
        ({"config": {"stepz": 2}}, r"unknown FPP option\(s\) \['stepz'\]"),
        ({"classes": ["dtd.txt", "dtd.txt"]}, "two jobs would write"),
        (
            {"backbones": [{"name": "a", "model": "tiny-a.pt", "dtype": "fp16"}]},
            r"unknown key\(s\) \['dtype'\] in backbones\[0\]; known: model, name",
        ),
        (
            {"classes": [{"file": "dtd.txt", "nmae": "x"}]},
            r"unknown key\(s\) \['nmae'\] in classes\[0\]; known: file, name",
        ),
        ({"config": 3}, "'config' must be a table of FPPConfig fields, got 3"),
        ({"config": []}, "'config' must be a table"),
        ({"templates": ["a photo of a {}"]}, "places the class name with '{}'"),
        ({"templates": ["  "]}, "must be a non-empty string"),
        ({"num_classes": 10**8}, r"num_classes must be an int in \[1, 10000000\]"),
        ({"backbones": [{"name": "x" * 300, "model": "tiny-a.pt"}]}, "file name .* bytes long; file systems allow"),
    ],
)
def test_bad_specs(spec: Path, change: dict[str, object], match: str) -> None:
    data = {"backbones": [str(spec.parent / "tiny-a.pt")], "classes": ["agnostic"], "seeds": [0], **change}
    for key, field in (("classes", "file"), ("backbones", "model")):
        if change.get(key):
            data[key] = [
                {**c, field: str(spec.parent / c[field])} if isinstance(c, dict) else str(spec.parent / c)
                for c in change[key]  # type: ignore[union-attr]
            ]
    with pytest.raises(fpp_init.FPPError, match=match) as info:
        load_zoo_spec(data)
    assert type(info.value) in (fpp_init.errors.ConfigError, fpp_init.errors.TemplateError)


def test_a_missing_backbone_file_is_refused_before_any_job(spec: Path, tmp_path: Path) -> None:
    data = {"backbones": [str(spec.parent / "tiny-a.pt"), str(tmp_path / "gone.pt")], "classes": ["agnostic"]}
    with pytest.raises(fpp_init.errors.ModelLoadError, match=r"backbones\[1\]: CLIP checkpoint not found: '.*gone.pt'"):
        build_zoo(data, tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_build_rerun_and_resume(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "zoo"
    # a run killed during the third job (a checkpoint after each step): two files are written
    real = optimizer_module._Run.step
    calls = {"n": 0}

    def crash(self: optimizer_module._Run) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 4 + 4 + 3:  # third job, step 3
            raise KeyboardInterrupt
        return real(self)

    with monkeypatch.context() as m:
        m.setattr(optimizer_module._Run, "step", crash)
        with pytest.raises(KeyboardInterrupt):
            build_zoo(spec, out, progress=False)
    assert sorted(p.name for p in out.glob("*.safetensors")) == [
        "fpp_tiny-a_agnostic_seed3.safetensors",
        "fpp_tiny-a_dtd_seed3.safetensors",
    ]
    assert (out / ".checkpoints" / "fpp_tiny-b_agnostic_seed3.safetensors.ckpt").exists()

    assert main(["zoo", str(spec), "--out", str(out), "--quiet"]) == 0  # resumes the third, builds the fourth
    files = json.loads(capsys.readouterr().out)["files"]
    assert len(files) == 4
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["file"] for e in manifest] == files
    for entry in manifest:
        path = out / entry["file"]
        prompt = fpp_init.load_fpp_prompt(path)
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert entry["fingerprint"] == prompt.fingerprint and entry["seed"] == 3 == prompt.config["seed"]
        assert entry["final_losses"] == prompt.final_losses and prompt.config["steps"] == 4
        assert (prompt.num_classes, entry["classes"]) in ((5, "agnostic"), (3, "dtd"))
    # nothing local in what is published: model files by name and sha256, no folder of this machine
    for entry, model in zip(manifest, ["tiny-a.pt", "tiny-a.pt", "tiny-b.pt", "tiny-b.pt"], strict=True):
        assert entry["model"] == model
        assert entry["model_sha256"] == hashlib.sha256((spec.parent / model).read_bytes()).hexdigest()
    for name in ("manifest.json", "README.md"):
        text = (out / name).read_text()
        assert str(spec.parent) not in text and str(tmp_path) not in text and os.path.expanduser("~") not in text
    card = ModelCard.load(out / "README.md")
    assert [r["file"] for r in card.data.to_dict()["fpp_init"]["files"]] == files
    assert all(f in card.text for f in files) and 'load_fpp_prompt("hf://' in card.text
    # the resumed job equals a job run in one go
    whole = fpp_init.pretrain_flat_prompt(
        str(spec.parent / "tiny-b.pt"), class_agnostic=True, num_classes=5, steps=4, seed=3, progress=False
    )
    assert torch.equal(fpp_init.load_fpp_prompt(out / "fpp_tiny-b_agnostic_seed3.safetensors").ctx, whole.ctx)

    # a rerun does no work and changes no file
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    monkeypatch.setattr(pretrain_module, "optimize_flat_prompt", _fail)
    assert build_zoo(spec, out, progress=False) == manifest
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_a_changed_flat_weight_rebuilds_the_job(tmp_path: Path) -> None:
    torch.save(build_tiny_clip(64, layers=1).state_dict(), tmp_path / "tiny.pt")
    (tmp_path / "set.txt").write_text("banded\nblotchy\n")
    base = {"backbones": [str(tmp_path / "tiny.pt")], "classes": [str(tmp_path / "set.txt")], "seeds": [0]}
    out, name = tmp_path / "out", "fpp_tiny_set_seed0.safetensors"
    build_zoo({**base, "config": {"steps": 2}}, out, progress=False)
    assert fpp_init.load_fpp_prompt(out / name).config["flat_weight"] == 1 + 15 / 2
    build_zoo({**base, "config": {"steps": 2, "flat_weight": 1 + 15 / 2}}, out, progress=False)  # the same weight
    build_zoo({**base, "config": {"steps": 2, "flat_weight": 5.0}}, out, progress=False)
    rebuilt = fpp_init.load_fpp_prompt(out / name)
    single = fpp_init.pretrain_flat_prompt(
        str(tmp_path / "tiny.pt"), ["banded", "blotchy"], steps=2, seed=0, flat_weight=5.0, progress=False
    )
    assert rebuilt.config["flat_weight"] == 5.0 and torch.equal(rebuilt.ctx, single.ctx)


def test_tpt_spelling_of_a_template_in_a_spec(spec: Path) -> None:
    data = {"backbones": [str(spec.parent / "tiny-a.pt")], "classes": ["agnostic"], "templates": ["a_photo_of_a"]}
    jobs, _, _ = load_zoo_spec(data)
    assert [j.template for j in jobs] == ["a photo of a"]  # what the file records: a rerun finds it done
    with pytest.raises(fpp_init.errors.TemplateError, match=r"templates\[\] .*places the class name"):
        load_zoo_spec({**data, "templates": ["a photo of a {}"]})


def test_public_model_names_nothing_local(tmp_path: Path) -> None:
    from fpp_init.api._zoo import public_model

    weights = tmp_path / "alice" / "ViT-B-16.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    assert public_model(str(weights)) == {"model": "ViT-B-16.pt", "model_sha256": digest}
    assert public_model(f"open_clip:ViT-B-16/{weights}") == {
        "model": "open_clip:ViT-B-16/ViT-B-16.pt",
        "model_sha256": digest,
    }
    folder = tmp_path / "my-hf-clip"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    entry = public_model(f"hf:{folder}")
    assert entry["model"] == "hf:my-hf-clip" and len(entry["model_sha256"]) == 64
    assert public_model(str(folder)) == entry
    for name in ("ViT-B/16", "open_clip:ViT-B-32/openai", "hf:openai/clip-vit-base-patch16", "open_clip:hf-hub:o/r"):
        assert public_model(name) == {"model": name}


def test_push_refuses_a_manifest_with_a_local_path(tmp_path: Path) -> None:
    from helpers import make_prompt

    make_prompt().save(tmp_path / "fpp_x_agnostic_seed0.safetensors")
    (tmp_path / "manifest.json").write_text(
        json.dumps([{"file": "fpp_x_agnostic_seed0.safetensors", "model": "/data/models/ViT-B-16.pt"}])
    )
    with pytest.raises(
        fpp_init.errors.ConfigError, match=r"records the local path '/data/models/ViT-B-16\.pt'.*fpp-init zoo"
    ):
        fpp_init.push_fpp_prompt(tmp_path, "someone/prompts")


def _small_zoo(tmp_path: Path) -> dict[str, object]:
    torch.save(build_tiny_clip(64, layers=1).state_dict(), tmp_path / "tiny.pt")
    (tmp_path / "set.txt").write_text("banded\nblotchy\n")
    return {
        "backbones": [str(tmp_path / "tiny.pt")],
        "classes": ["agnostic", str(tmp_path / "set.txt")],
        "num_classes": 3,
        "config": {"steps": 2},
    }


def _counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"n": 0}
    real = pretrain_module.optimize_flat_prompt

    def counted(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pretrain_module, "optimize_flat_prompt", counted)
    return calls


def test_a_finished_file_edited_since_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file, save_file

    spec, out = _small_zoo(tmp_path), tmp_path / "out"
    build_zoo(spec, out, progress=False)
    built = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    edited = out / "fpp_tiny_set_seed0.safetensors"
    meta = fpp_init.artifacts.read_prompt_file(edited).metadata
    ctx = load_file(edited)["ctx"]
    ctx[0, 0] += 1.0  # same metadata, other ctx: only the manifest's sha256 tells
    save_file({"ctx": ctx}, edited, metadata=meta)
    calls = _counting(monkeypatch)
    with pytest.warns(fpp_init.FPPWarning, match="fpp_tiny_set_seed0.safetensors does not match the sha256"):
        build_zoo(spec, out, progress=False)
    assert calls["n"] == 1  # that job only
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == built  # rebuilt exactly


def test_an_unreadable_manifest_is_said_and_rewritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, out = _small_zoo(tmp_path), tmp_path / "out"
    build_zoo(spec, out, progress=False)
    manifest = (out / "manifest.json").read_bytes()
    (out / "manifest.json").write_text("[{")
    calls = _counting(monkeypatch)
    with pytest.warns(fpp_init.FPPWarning, match="manifest.json' cannot be read .* checked by their metadata only"):
        build_zoo(spec, out, progress=False)
    assert calls["n"] == 0 and (out / "manifest.json").read_bytes() == manifest


def test_cli_unknown_key_in_an_entry_is_one_line(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "zoo.toml"
    bad.write_text(
        f'backbones = [{{ name = "a", model = "{spec.parent / "tiny-a.pt"}", pretrained = "x" }}]\n'
        'classes = ["agnostic"]\n'
    )
    assert main(["zoo", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key(s) ['pretrained'] in backbones[0]" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zoo.toml"]
