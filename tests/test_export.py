"""CoOp-format export and the Hub upload folder with its model card."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest
import torch
from helpers import make_prompt
from huggingface_hub import ModelCard

import fpp_init
from fpp_init import FPPPrompt
from fpp_init.artifacts import build_hub_folder, export_coop
from fpp_init.errors import ConfigError


def test_coop_export_loads_with_weights_only(tmp_path: Path) -> None:
    prompt = make_prompt()
    out = export_coop(prompt, tmp_path / "fpp_coop.pth")
    safe = torch.load(out, weights_only=True)
    assert set(safe) == {"state_dict", "epoch"} and set(safe["state_dict"]) == {"ctx"}
    ctx = safe["state_dict"]["ctx"]
    assert ctx.shape == (4, 128) and ctx.dtype == torch.float32 and ctx.device.type == "cpu"
    assert torch.equal(ctx, prompt.ctx)
    assert safe["epoch"] == 7  # the FPP step count
    # exactly what TPT's --load does (no map_location, no weights_only)
    pretrained_ctx = torch.load(str(out), weights_only=False)["state_dict"]["ctx"]
    assert pretrained_ctx.size()[0] == 4 and torch.equal(pretrained_ctx, prompt.ctx)
    # and fpp-init reads it back when told the pickle is trusted
    assert torch.equal(fpp_init.load_fpp_prompt(out, allow_pickle=True).ctx, prompt.ctx)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fpp_coop.pth"]  # no temp file left


def test_coop_export_options(tmp_path: Path) -> None:
    big = torch.randn(1000, 128, generator=torch.Generator().manual_seed(0))
    view = FPPPrompt(ctx=big[:4].half(), template=None)  # a view of a large fp16 storage, no config
    out = export_coop(view, tmp_path / "v.pth", epoch=3)
    loaded = torch.load(out, weights_only=True)
    assert loaded["epoch"] == 3 and loaded["state_dict"]["ctx"].dtype == torch.float32
    assert out.stat().st_size < 20_000  # only the 4 rows are stored
    assert export_coop(view, tmp_path / "w.pth").exists() and torch.load(tmp_path / "w.pth")["epoch"] == 0
    # from a file path, replacing an existing file
    src = make_prompt(seed=1).save(tmp_path / "p.safetensors")
    export_coop(src, out)
    assert torch.equal(torch.load(out, weights_only=True)["state_dict"]["ctx"], make_prompt(seed=1).ctx)
    with pytest.raises(ConfigError, match="epoch must be an int"):
        export_coop(view, tmp_path / "x.pth", epoch=1.5)  # type: ignore[arg-type]
    assert not (tmp_path / "x.pth").exists()


def test_hub_folder_and_model_card(tmp_path: Path) -> None:
    names = ["banded", "blotchy", "braided"]
    agnostic = make_prompt()
    specific = make_prompt(seed=1, classnames=names, class_agnostic=False, num_classes=3)
    folder = tmp_path / "hub"
    written = build_hub_folder([agnostic, specific], folder, repo_id="someone/fpp-prompts", license="mit")
    files = sorted(p.name for p in folder.iterdir())
    assert files == sorted(p.name for p in written)
    assert "README.md" in files and "fpp_vit-b-16_agnostic_seed0.safetensors" in files
    prompt_files = [f for f in files if f.endswith(".safetensors")]
    assert len(prompt_files) == 2
    for name, original in (("fpp_vit-b-16_agnostic_seed0.safetensors", agnostic),):
        got = fpp_init.load_fpp_prompt(folder / name)
        assert torch.equal(got.ctx, original.ctx) and got.config == original.config

    card = ModelCard.load(folder / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "fpp-init"
    assert "fpp-init" in data["tags"] and "clip" in data["tags"]
    assert data["base_model"] == "openai/clip-vit-base-patch16"
    assert data["license"] == "mit"
    records = {r["file"]: r for r in data["fpp_init"]["files"]}
    assert set(records) == set(prompt_files)
    rec = records["fpp_vit-b-16_agnostic_seed0.safetensors"]
    assert rec["config"] == agnostic.config and rec["final_losses"] == agnostic.final_losses
    assert rec["fingerprint"] == agnostic.fingerprint and rec["n_ctx"] == 4 and rec["width"] == 128
    (spec_name,) = [f for f in prompt_files if "3cls" in f]
    assert records[spec_name]["classnames"] == names
    text = card.text
    assert 'load_fpp_prompt("hf://someone/fpp-prompts/' in text
    assert "--coop fpp_coop.pth" in text and "fpp-init " + fpp_init.__version__ in text
    assert "No accuracy or calibration figures are claimed" in text
    # honest: no numbers that look like accuracy / ECE claims
    assert "ECE" not in card.content and not re.search(r"\d\s*%", card.content)


def test_hub_folder_names_and_provenance(tmp_path: Path) -> None:
    bare = FPPPrompt(ctx=torch.ones(2, 16), template=None)
    folder = tmp_path / "hub"
    build_hub_folder(bare, folder, filenames=["coop_converted.safetensors"])
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "coop_converted.safetensors"]
    card = ModelCard.load(folder / "README.md")
    assert "base_model" not in card.data.to_dict()
    assert "No FPP configuration is recorded for `coop_converted.safetensors`" in card.text
    assert "hf://OWNER/REPO/coop_converted.safetensors" in card.text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prompts": []}, "no prompts"),
        ({"prompts": [make_prompt(), make_prompt()]}, "two prompts would be written"),
        ({"filenames": ["a.safetensors", "b.safetensors"]}, "one name per prompt"),
        ({"filenames": ["a.pt"]}, "must end in .safetensors"),
        ({"filenames": ["sub/a.safetensors"]}, "must be a plain name"),
        ({"filenames": ["b\x00.safetensors"]}, "holds a NUL or other control character"),
        ({"filenames": ["b\n.safetensors"]}, "holds a NUL or other control character"),
        ({"filenames": [".b.safetensors"]}, "must not start with '.'"),
        ({"filenames": ["\ud800.safetensors"]}, "cannot encode"),
        ({"filenames": ["x" * 250 + ".safetensors"]}, "is 262 bytes long; file systems allow at most 255"),
        ({"filenames": [3]}, "must be a non-empty string"),
        (
            {"prompts": [make_prompt(), make_prompt(seed=1)], "filenames": ["a.safetensors", "b\x00.safetensors"]},
            r"file name 'b\\x00.safetensors' holds a NUL",
        ),
    ],
)
def test_hub_folder_errors_write_nothing(tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    folder = tmp_path / "hub"
    args = {"prompts": [make_prompt()], **kwargs}
    with pytest.raises(ConfigError, match=match):
        build_hub_folder(args.pop("prompts"), folder, **args)  # type: ignore[arg-type]
    assert not folder.exists()


def test_hub_folder_refuses_non_empty_folder(tmp_path: Path) -> None:
    folder = tmp_path / "hub"
    folder.mkdir()
    keep = folder / "mine.txt"
    keep.write_text("keep me")
    with pytest.raises(fpp_init.errors.OutputError, match=r"not empty.*overwrite=True"):
        build_hub_folder(make_prompt(), folder)
    assert sorted(p.name for p in folder.iterdir()) == ["mine.txt"]
    build_hub_folder(make_prompt(), folder, overwrite=True)
    assert keep.read_text() == "keep me" and (folder / "README.md").exists()


def _folder_state(folder: Path) -> dict[str, bytes | str]:
    return {p.name: (p.read_bytes() if p.is_file() else "dir") for p in sorted(folder.iterdir())}


def test_existing_folder_with_a_folder_in_a_target_is_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "hub"
    build_hub_folder([make_prompt()], folder, filenames=["a.safetensors"])
    (folder / "b.safetensors").mkdir()
    before = _folder_state(folder)
    with pytest.raises(fpp_init.errors.OutputError, match=r"'b.safetensors' there is a folder; remove it"):
        build_hub_folder(
            [make_prompt(seed=1), make_prompt(seed=2)],
            folder,
            filenames=["a.safetensors", "b.safetensors"],
            overwrite=True,
        )
    assert _folder_state(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub"]  # no staging folder left


def test_a_failure_half_way_into_an_existing_folder_puts_the_old_files_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The OS refusing the third rename (say, the disk went read-only): the first two are undone."""
    from fpp_init.artifacts import export as export_module

    folder = tmp_path / "hub"
    build_hub_folder([make_prompt()], folder, filenames=["a.safetensors"])
    (folder / "mine.txt").write_text("keep me")
    before = _folder_state(folder)
    real, calls = os.replace, {"n": 0}

    def third_fails(src: object, dst: object) -> None:
        if str(dst).startswith(str(folder)) and ".tmp" not in str(dst):
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError(errno.EROFS, "Read-only file system")
        real(src, dst)

    monkeypatch.setattr(export_module.os, "replace", third_fails)
    with pytest.raises(fpp_init.errors.OutputError, match=r"cannot write Hub folder .*: read-only file system"):
        build_hub_folder(
            [make_prompt(seed=1), make_prompt(seed=2)],
            folder,
            filenames=["a.safetensors", "b.safetensors"],
            overwrite=True,
        )
    monkeypatch.undo()
    assert _folder_state(folder) == before  # a.safetensors is the old file again, no b.safetensors, old card
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub"]
