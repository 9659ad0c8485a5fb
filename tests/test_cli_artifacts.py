"""``fpp-init export``, ``push`` and ``inspect`` through the real argument parser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import make_hf_cache, make_prompt
from huggingface_hub import ModelCard

import fpp_init
from fpp_init.cli import main


def test_export_coop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_prompt().save(tmp_path / "p.safetensors")
    out = tmp_path / "coop" / "fpp.pth"
    assert main(["export", str(src), "--coop", str(out), "--epoch", "5"]) == 0
    assert json.loads(capsys.readouterr().out) == {"coop": str(out), "n_ctx": 4, "width": 128}
    loaded = torch.load(out, weights_only=True)
    assert loaded["epoch"] == 5 and torch.equal(loaded["state_dict"]["ctx"], make_prompt().ctx)


def test_export_hub_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_prompt().save(tmp_path / "a.safetensors")
    b = make_prompt(seed=1).save(tmp_path / "b.safetensors")
    folder = tmp_path / "hub"
    assert main(["export", str(a), str(b), "--hub", str(folder), "--repo-id", "me/fpp"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert sorted(files) == [
        "README.md",
        "fpp_vit-b-16_agnostic_seed0.safetensors",
        "fpp_vit-b-16_agnostic_seed1.safetensors",
    ]
    assert ModelCard.load(folder / "README.md").data.library_name == "fpp-init"
    # not empty any more: refused without --force; explicit names
    assert main(["export", str(a), "--hub", str(folder)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["export", str(a), "--hub", str(folder), "--force", "--name", "x.safetensors"]) == 0
    assert torch.equal(fpp_init.load_fpp_prompt(folder / "x.safetensors").ctx, make_prompt().ctx)


def test_export_out_converts_trusted_pickle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = make_prompt().ctx
    coop = tmp_path / "coop.pth"
    torch.save({"state_dict": {"ctx": ctx, "token_prefix": torch.zeros(3, 1, 128)}, "epoch": 50}, coop)
    out = tmp_path / "converted.safetensors"
    assert main(["export", str(coop), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "--allow-pickle" in err and not out.exists()
    assert main(["export", str(coop), "--out", str(out), "--allow-pickle"]) == 0
    got = fpp_init.load_fpp_prompt(out)
    assert torch.equal(got.ctx, ctx) and got.template is None


def test_export_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_prompt().save(tmp_path / "a.safetensors")
    assert main(["export", str(a), str(a), "--coop", str(tmp_path / "x.pth")]) == 2
    assert "exactly one SOURCE" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # one destination is required
        main(["export", str(a)])
    with pytest.raises(SystemExit):
        main(["export", str(a), "--coop", "x.pth", "--out", "y.safetensors"])
    assert main(["export", str(tmp_path / "missing.safetensors"), "--coop", str(tmp_path / "x.pth")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "x.pth").exists()


def test_inspect_json_and_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompt = make_prompt()
    src = prompt.save(tmp_path / "p.safetensors")
    assert main(["inspect", str(src), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [4, 128] and info["dtype"] == "float32"
    assert info["norm"] == pytest.approx(float(prompt.ctx.norm()), rel=1e-6)
    assert info["row_norm_mean"] == pytest.approx(float(prompt.ctx.norm(dim=-1).mean()), rel=1e-6)
    assert info["fingerprint"] == "00ff00ff00ff00ff" and info["backbone"] == "ViT-B/16"
    assert info["config"] == prompt.config and info["final_losses"] == prompt.final_losses
    assert info["bytes"] == src.stat().st_size and info["path"] == str(src)
    assert main(["inspect", str(src)]) == 0
    text = capsys.readouterr().out
    assert "4 x 128, float32" in text and "fingerprint  00ff00ff00ff00ff" in text and "class-agnostic" in text


def test_inspect_pickle_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    coop = tmp_path / "coop.pth"
    torch.save({"state_dict": {"ctx": torch.ones(2, 8)}}, coop)
    assert main(["inspect", str(coop)]) == 2
    assert "pickle" in capsys.readouterr().err
    assert main(["inspect", str(coop), "--allow-pickle", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [2, 8] and info["fingerprint"] is None and info["norm"] == pytest.approx(4.0)


def test_inspect_hub_reference_from_env_cache_in_a_fresh_process(tmp_path: Path) -> None:
    """The real import-time environment path of huggingface_hub: HF_HUB_CACHE and HF_HUB_OFFLINE set before start."""
    data = make_prompt().save(tmp_path / "p.safetensors").read_bytes()
    root = make_hf_cache(tmp_path / "hf", "someone/fpp-prompts", {"fpp.safetensors": data})
    env = {**os.environ, "HF_HUB_CACHE": str(root), "HF_HUB_OFFLINE": "1"}
    script = (
        "import sys; from fpp_init.cli import main; "
        "rc1 = main(['inspect', 'hf://someone/fpp-prompts/fpp.safetensors', '--json']); "
        "rc2 = main(['inspect', 'hf://someone/fpp-prompts/other.safetensors']); "
        "print('RC', rc1, rc2)"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    first, last = run.stdout.strip().splitlines()
    assert last == "RC 0 2"
    info = json.loads(first)
    assert info["shape"] == [4, 128] and info["source"] == "hf://someone/fpp-prompts/fpp.safetensors"
    assert Path(info["path"]).resolve().parent == (root / "models--someone--fpp-prompts" / "blobs").resolve()
    assert "not in the local Hugging Face cache" in run.stderr and "HF_HUB_OFFLINE" in run.stderr


def test_push_validation_without_network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_prompt().save(tmp_path / "p.safetensors")
    assert main(["push", str(src), "--repo", "no-owner"]) == 2
    assert "OWNER/NAME" in capsys.readouterr().err
    assert main(["push", str(src), str(src), "--repo", "me/fpp"]) == 2
    assert "two prompts would be written" in capsys.readouterr().err
    assert main(["push", str(tmp_path / "absent.safetensors"), "--repo", "me/fpp"]) == 2
    assert "not found" in capsys.readouterr().err
