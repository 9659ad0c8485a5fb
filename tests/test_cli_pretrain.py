"""The ``fpp-init pretrain`` command, run as users run it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fpp_init import load_fpp_prompt
from fpp_init.cli import main


def test_pretrain_with_weights_and_classnames_file(tiny_ckpt, tmp_path, capsys):
    names = tmp_path / "names.txt"
    names.write_text("banded\nblotchy\n\nbraided\n")
    out = tmp_path / "p.safetensors"
    rc = main(
        ["pretrain", "--weights", str(tiny_ckpt), "--classnames", str(names), "--steps", "3", "--seed", "5"]
        + ["--out", str(out), "--quiet"]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["out"] == str(out) and summary["n_ctx"] == 4 and summary["width"] == 128
    prompt = load_fpp_prompt(out)
    assert prompt.classnames == ["banded", "blotchy", "braided"]
    assert prompt.config["seed"] == 5 and prompt.config["steps"] == 3


def test_pretrain_json_classnames_and_agnostic(tiny_ckpt, tmp_path):
    names = tmp_path / "names.json"
    names.write_text(json.dumps(["a_b", "c"]))
    assert (
        main(
            ["pretrain", "--weights", str(tiny_ckpt), "--classnames", str(names), "--steps", "1"]
            + ["--out", str(tmp_path / "a.safetensors"), "--quiet"]
        )
        == 0
    )
    assert load_fpp_prompt(tmp_path / "a.safetensors").classnames == ["a_b", "c"]
    assert (
        main(
            ["pretrain", "--weights", str(tiny_ckpt), "--class-agnostic", "--num-classes", "4"]
            + ["--steps", "1", "--out", str(tmp_path / "b.safetensors"), "--quiet"]
        )
        == 0
    )
    agnostic = load_fpp_prompt(tmp_path / "b.safetensors")
    assert agnostic.class_agnostic and agnostic.num_classes == 4


def test_offline_download_is_one_clear_message(tmp_path):
    # a real subprocess; the download is made to fail fast by an unreachable proxy
    env = {"PATH": "", "HOME": str(tmp_path), "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    env.update({k: v for k, v in __import__("os").environ.items() if k in ("PYTHONPATH", "VIRTUAL_ENV", "SYSTEMROOT")})
    out = subprocess.run(
        [sys.executable, "-m", "fpp_init", "pretrain", "--class-agnostic", "--device", "cpu", "--quiet"]
        + ["--out", str(tmp_path / "x.safetensors")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "could not download CLIP 'ViT-B/16'" in lines[0] and "--weights PATH" in lines[0]
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--classnames", "/nonexistent/names.txt"], "class-name file not found: '/nonexistent/names.txt'"),
        (["--class-agnostic", "--steps", "-3"], "--steps must be an int in [1, 1000000000], got -3"),
        (["--class-agnostic", "--steps", "0"], "--steps must be an int in [1, 1000000000], got 0"),
        (["--class-agnostic", "--template", "a [CLS] photo"], "only the class at the end"),
    ],
)
def test_bad_input_exits_2_with_message(tiny_ckpt, tmp_path, capsys, args, message):
    rc = main(["pretrain", "--weights", str(tiny_ckpt), "--out", str(tmp_path / "x.safetensors"), "--quiet", *args])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("fpp-init pretrain: error:")
    assert not (tmp_path / "x.safetensors").exists()


def test_requires_a_class_choice(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", "--out", str(tmp_path / "x.safetensors")])
    assert exc.value.code == 2
    assert "one of the arguments --classnames --class-agnostic is required" in capsys.readouterr().err
