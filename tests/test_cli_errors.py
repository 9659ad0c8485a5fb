"""The CLI never shows a traceback for a user or OS error: one line on stderr, exit status 2, nothing written."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from _refused import LONG_NAME, LONG_PATH, refused_folder, unprivileged
from helpers import make_prompt

import fpp_init.api._pretrain as pretrain_module
from fpp_init.cli import main
from fpp_init.config import FPPConfig, SharpnessConfig


def _one_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(f"fpp-init {command}: error: "), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _pretrain_args(weights: Path, names: Path, out: Path) -> list[str]:
    return ["pretrain", "--weights", str(weights), "--classnames", str(names), "--out", str(out)]


@pytest.fixture
def names(tmp_path: Path) -> Path:
    path = tmp_path / "names.txt"
    path.write_text("banded\nblotchy\n")
    return path


def test_corrupt_weights_file(tmp_path: Path, names: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for content in (b"garbage" * 100, b"PK\x03\x04" + b"\x00" * 200):
        bad = tmp_path / "bad.pt"
        bad.write_bytes(content)
        out = tmp_path / "x.safetensors"
        assert main(["pretrain", "--weights", str(bad), "--classnames", str(names), "--out", str(out), "--quiet"]) == 2
        err = _one_error(capsys, "pretrain")
        assert "could not read CLIP checkpoint" in err and "bad.pt" in err
        assert not out.exists()


def test_refused_pickle_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "coop.pth"
    torch.save({"state_dict": {"ctx": torch.zeros(4, 8)}}, path)
    for args in (["inspect", str(path)], ["export", str(path), "--out", str(tmp_path / "o.safetensors")]):
        assert main(args) == 2
        assert "--allow-pickle" in _one_error(capsys, args[0])
    evil = tmp_path / "evil.pth"
    evil.write_bytes(b"PK\x03\x04" + b"junk" * 50)
    assert main(["inspect", str(evil), "--allow-pickle"]) == 2
    assert "corrupt, truncated" in _one_error(capsys, "inspect")


def test_classnames_file_errors(tmp_path: Path, tiny_ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("banded\ncr\xe8me\n".encode("latin-1"))
    fifo = tmp_path / "names.fifo"
    os.mkfifo(fifo)
    cases = [
        (bad, r"class-name file '.*latin1.txt' is not UTF-8 text \(byte 9: b'\\xe8'\)"),
        (fifo, "is a FIFO; only regular files are read as a class-name file"),
        (tmp_path, "is a folder; pass the class-name file inside it"),
        (tmp_path / "absent.txt", "class-name file not found"),
    ]
    for path, message in cases:
        start = time.monotonic()
        args = [
            "pretrain",
            "--weights",
            str(tiny_ckpt),
            "--classnames",
            str(path),
            "--out",
            str(tmp_path / "o.safetensors"),
        ]
        assert main(args) == 2
        assert __import__("re").search(message, _one_error(capsys, "pretrain"))
        assert time.monotonic() - start < 5  # never blocks on a FIFO
    bad_json = tmp_path / "names.json"
    bad_json.write_text('["a", ')
    assert main(["pretrain", "--classnames", str(bad_json), "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "not valid JSON" in _one_error(capsys, "pretrain")
    assert not (tmp_path / "o.safetensors").exists()


def test_config_file(tmp_path: Path, tiny_ckpt: Path, names: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _pretrain_args(tiny_ckpt, names, tmp_path / "o.safetensors")
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = [\n")
    assert main([*base, "--config", str(bad)]) == 2
    assert "is not valid TOML" in _one_error(capsys, "pretrain")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("stepz = 3\n")
    assert main([*base, "--config", str(unknown)]) == 2
    assert "unknown FPP option(s) ['stepz']" in _one_error(capsys, "pretrain")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[fpp]\nlr = "fast"\n')
    assert main([*base, "--config", str(wrong)]) == 2
    assert "--lr must be a finite number, got 'fast'" in _one_error(capsys, "pretrain")
    good = tmp_path / "good.toml"
    good.write_text("[fpp]\nsteps = 2\nseed = 4\nnum_noise = 2\n")
    assert main([*base, "--config", str(good), "--seed", "5", "--quiet"]) == 0  # flags win over the file
    written = fpp_init_load(tmp_path / "o.safetensors")
    assert (written.config["steps"], written.config["seed"], written.config["num_noise"]) == (2, 5, 2)


DEEP = 100_000
CONFIG_FILE_CASES = {
    "nested arrays": ("steps = " + "[" * DEEP + "]" * DEEP + "\n", "is nested too deeply to be read"),
    "nested inline tables": ("steps = " + "{a = " * DEEP + "1" + "}" * DEEP + "\n", "is nested too deeply"),
    "a key beside [fpp]": ("seed = 1\n[fpp]\nsteps = 2\n", r"\['seed'\] outside the \[fpp\] table would not be used"),
    "a table beside [fpp]": ("[fpp]\nsteps = 2\n[train]\nlr = 1\n", r"\['train'\] outside the \[fpp\] table"),
    "unknown key in [fpp]": ("[fpp]\nstepz = 2\n", r"unknown FPP option\(s\) \['stepz'\]"),
}


@pytest.mark.parametrize("case", list(CONFIG_FILE_CASES))
def test_config_files_quietly_wrong(
    tmp_path: Path,
    tiny_ckpt: Path,
    names: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    monkeypatch.setattr(pretrain_module, "optimize_flat_prompt", _no_work)
    text, message = CONFIG_FILE_CASES[case]
    config = tmp_path / "c.toml"
    config.write_text(text)
    assert main([*_pretrain_args(tiny_ckpt, names, tmp_path / "o.safetensors"), "--config", str(config)]) == 2
    err = _one_error(capsys, "pretrain")
    assert re.search(message, err) and "c.toml" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml", "names.txt"]


def test_files_nested_too_deeply(tmp_path: Path, tiny_ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import save

    deep = "[" * DEEP + "]" * DEEP
    names = tmp_path / "deep.json"
    names.write_text(deep)
    assert (
        main(["pretrain", "--weights", str(tiny_ckpt), "--classnames", str(names), "--out", str(tmp_path / "o")]) == 2
    )
    assert "class-name file" in (err := _one_error(capsys, "pretrain")) and "nested too deeply" in err, err
    header = ('{"a":' + deep + "}").encode()
    (tmp_path / "header.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    assert main(["inspect", str(tmp_path / "header.safetensors")]) == 2
    assert "its header is nested too deeply" in _one_error(capsys, "inspect")
    meta = {**make_prompt().metadata(), "classnames": deep}
    (tmp_path / "meta.safetensors").write_bytes(save({"ctx": make_prompt().ctx}, metadata=meta))
    assert main(["inspect", str(tmp_path / "meta.safetensors")]) == 2
    assert "metadata field 'classnames' is nested too deeply" in _one_error(capsys, "inspect")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.json", "header.safetensors", "meta.safetensors"]


def fpp_init_load(path: Path):
    import fpp_init

    return fpp_init.load_fpp_prompt(path)


def test_every_config_field_has_a_flag(tmp_path: Path, tiny_ckpt: Path, names: Path) -> None:
    out = tmp_path / "o.safetensors"
    args = ["pretrain", "--weights", str(tiny_ckpt), "--classnames", str(names), "--out", str(out), "--quiet"]
    args += ["--steps", "2", "--lr", "0.02", "--min-lr", "0.001", "--weight-decay", "0", "--num-noise", "3"]
    args += ["--ctx-noise", "0.05", "--cls-noise", "0.1", "--flat-weight", "2.5", "--init", "predefined"]
    args += ["--init-std", "0.2", "--seed", "9", "--chunk-classes", "1", "--no-share-prefix", "--autocast", "off"]
    args += ["--threads", "1", "--dist-timeout", "30"]
    assert main(args) == 0
    cfg = fpp_init_load(out).config
    assert cfg == {
        "steps": 2, "lr": 0.02, "min_lr": 0.001, "weight_decay": 0.0, "num_noise": 3, "ctx_noise": 0.05,
        "cls_noise": 0.1, "flat_weight": 2.5, "init": "predefined", "init_std": 0.2, "seed": 9, "chunk_classes": 1,
        "share_prefix": False, "autocast": "off", "threads": 1, "dist_timeout": 30.0,
    }  # fmt: skip


def test_template_typo_warns_in_one_line(
    tmp_path: Path, tiny_ckpt: Path, names: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o.safetensors"
    args = ["pretrain", "--weights", str(tiny_ckpt), "--classnames", str(names), "--out", str(out), "--quiet"]
    assert main([*args, "--steps", "1", "--template", "a phtoo of a"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("fpp-init pretrain: warning: template 'a phtoo of a' gives 5 context vectors, not 4")
    assert err.count("\n") == 1


def test_internal_error_asks_for_a_report(
    tmp_path: Path, tiny_ckpt: Path, names: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def bug(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something the package did wrong")

    monkeypatch.setattr(pretrain_module, "optimize_flat_prompt", bug)
    args = _pretrain_args(tiny_ckpt, names, tmp_path / "o.safetensors")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: something the package did wrong. Please report it" in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert main(["--debug", *args]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_inspect_special_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "/dev/zero"]) == 2
    assert "is a device" in _one_error(capsys, "inspect")
    assert main(["inspect", str(tmp_path)]) == 2
    assert "is a folder" in _one_error(capsys, "inspect")


def test_hub_without_network_fails_fast_and_quietly(tmp_path: Path) -> None:
    """No --offline: one short probe finds no network; no retry chatter; one line."""
    env = {
        **os.environ,
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_CACHE": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "0",
    }
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "fpp_init", "inspect", "hf://someone/prompts/p.safetensors"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "cannot be reached within 3 s" in out.stderr, out.stderr
    assert time.monotonic() - start < 15
    push = subprocess.run(
        [sys.executable, "-m", "fpp_init", "push", str(make_prompt().save(tmp_path / "p.safetensors")), "--repo-id", "a/b"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert push.returncode == 2 and push.stderr.count("\n") == 1, push.stderr
    assert "cannot push to 'a/b': the Hub (http://127.0.0.1:9) cannot be reached" in push.stderr


@pytest.mark.parametrize(("command", "config"), [("pretrain", FPPConfig), ("sharpness", SharpnessConfig)])
def test_every_config_flag_comes_from_its_fields_one_definition(
    command: str, config: type, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default None)" not in text
    for field in dataclasses.fields(config):
        meta, name = field.metadata, "--" + field.name.replace("_", "-")
        if meta.get("flag", name) is None:  # SharpnessConfig.landscape: set by --plot
            assert f"{name} " not in text
        elif "negative" in meta:  # the flag turns the field off, and its help says what that does
            assert f"--no-{name[2:]} {meta['negative']}" in text and meta["negative"] != meta["help"]
        else:
            default = meta.get("default_text") or (
                ",".join(f"{v:g}" for v in field.default) if isinstance(field.default, tuple) else str(field.default)
            )
            assert f"{' '.join(meta['help'].split())} (default {default})" in text, field.name
            assert re.search(rf"{name}( \{{[^}}]+\}}| \S+)? {re.escape(meta['help'][:20])}", text), field.name


def test_class_name_file_mistakes_in_cli_words(
    tmp_path: Path, tiny_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o.safetensors"
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert main(_pretrain_args(tiny_ckpt, empty, out)) == 2
    err = _one_error(capsys, "pretrain")
    assert f"class-name file {str(empty)!r} holds no class names" in err and "or pass --class-agnostic" in err
    assert "class_agnostic=True" not in err
    repeats = tmp_path / "pets.txt"
    repeats.write_text("cat\ndog\ncat\nDog\n")
    assert main(_pretrain_args(tiny_ckpt, repeats, out)) == 2
    err = _one_error(capsys, "pretrain")
    assert f"class-name file {str(repeats)!r}: 'cat' (line 1 and line 3) is given more than once" in err
    case_only = tmp_path / "case.txt"
    case_only.write_text("cat\ndog\nDog\n")
    assert main([*_pretrain_args(tiny_ckpt, case_only, out), "--steps", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "fpp-init pretrain: warning: class-name file" in err
    assert "'dog' (line 2) and 'Dog' (line 3) differ only in case" in err
    assert not (tmp_path / "x.safetensors").exists()


def test_a_class_name_file_is_warned_about_once(
    tmp_path: Path, tiny_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case_only = tmp_path / "case.txt"
    case_only.write_text("cat\ndog\nDog\n")
    out = tmp_path / "o.safetensors"
    assert main([*_pretrain_args(tiny_ckpt, case_only, out), "--steps", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("differ only in case") == 1, err  # the file's words, not the API's again
    spec = tmp_path / "zoo.toml"
    spec.write_text(f'backbones = ["{tiny_ckpt}"]\nclasses = ["case.txt"]\n[config]\nsteps = 1\n')
    assert main(["zoo", str(spec), "--out", str(tmp_path / "zoo"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("differ only in case") == 1, err
    assert "class-name file" in err and "(line 2)" in err


def test_weights_path_with_a_tilde_is_expanded(
    tmp_path: Path, tiny_ckpt: Path, names: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "w.pt").write_bytes(tiny_ckpt.read_bytes())
    out = tmp_path / "o.safetensors"
    argv = ["pretrain", "--weights=~/w.pt", "--classnames", str(names), "--out", str(out), "--steps", "1", "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    assert out.is_file()


def test_misspelt_flag_names_the_closest(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for argv, command, hint in [
        (
            ["pretrain", "--clasnames", "x.txt", "--out", "o.safetensors"],
            "pretrain",
            "--clasnames; did you mean --classnames?",
        ),
        (["sharpness", "a photo of a", "--plto", "x.png"], "sharpness", "--plto; did you mean --plot?"),
        (["inspect", "p.safetensors", "--jsn"], "inspect", "--jsn; did you mean --json?"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err == f"fpp-init {command}: error: unknown flag {hint} (see 'fpp-init {command} --help')\n"
    with pytest.raises(SystemExit):
        main(["pretrain", "--out", str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "usage:" not in err  # one line, no usage block


# -- paths the OS refuses: one line naming the path, exit 2, nothing written --------------------------
CLI_REFUSALS = {
    "mode-000 folder": "permission denied",
    "300-character name": "file name too long|name is too long",
    "5000-character path": "file name too long|name is too long",
}


def _refused(kind: str, r: Any, suffix: str) -> str:
    if kind == "mode-000 folder":
        return str(r.locked / f"f{suffix}")
    if kind == "300-character name":
        return str(r.root / f"{LONG_NAME}{suffix}")
    return str(r.root / LONG_PATH / f"f{suffix}")


#: (command, arguments given the refused path P, the readable model W, class names N and a folder D)
CLI_PATH_CASES: list[tuple[str, str, Callable[[str, str, str, Path], list[str]]]] = [
    ("inspect", ".safetensors", lambda p, w, n, d: ["inspect", p]),
    ("export", ".safetensors", lambda p, w, n, d: ["export", p, "--out", str(d / "o.safetensors")]),
    ("push", ".safetensors", lambda p, w, n, d: ["push", p, "--repo-id", "someone/prompts"]),
    ("pretrain", ".txt", lambda p, w, n, d: ["pretrain", "--weights", w, "--classnames", p, "--out", str(d / "o")]),
    ("pretrain", ".toml", lambda p, w, n, d: [*_pretrain_args(Path(w), Path(n), d / "o"), "--config", p]),
    ("pretrain", ".pt", lambda p, w, n, d: ["pretrain", "--weights", p, "--classnames", n, "--out", str(d / "o")]),
    ("zoo", ".toml", lambda p, w, n, d: ["zoo", p, "--out", str(d / "zoo")]),
    ("sharpness", ".safetensors", lambda p, w, n, d: ["sharpness", "--weights", w, "--classnames", n, p]),
    # outputs
    ("pretrain", ".safetensors", lambda p, w, n, d: _pretrain_args(Path(w), Path(n), Path(p))),
    ("pretrain", ".ckpt", lambda p, w, n, d: [*_pretrain_args(Path(w), Path(n), d / "o"), "--checkpoint", p]),
    ("export", ".pth", lambda p, w, n, d: ["export", str(d / "src.safetensors"), "--coop", p]),
    ("export", ".hub", lambda p, w, n, d: ["export", str(d / "src.safetensors"), "--hub", p]),
    ("zoo", ".out", lambda p, w, n, d: ["zoo", str(d / "zoo.toml"), "--out", p]),
]


@pytest.mark.parametrize("kind", list(CLI_REFUSALS))
@pytest.mark.parametrize(("command", "suffix", "args"), CLI_PATH_CASES, ids=[f"{c}{s}" for c, s, _ in CLI_PATH_CASES])
def test_paths_the_os_refuses(
    tiny_ckpt: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    command: str,
    suffix: str,
    args: Callable[[str, str, str, Path], list[str]],
) -> None:
    monkeypatch.setattr(pretrain_module, "optimize_flat_prompt", _no_work)
    with refused_folder() as r:
        weights, names = r.root / "w.pt", r.root / "n.txt"
        weights.write_bytes(tiny_ckpt.read_bytes())
        names.write_text("banded\nblotchy\n")
        make_prompt().save(r.root / "src.safetensors")
        (r.root / "zoo.toml").write_text(f'backbones = ["{weights}"]\nclasses = ["agnostic"]\n[config]\nsteps = 1\n')
        make_prompt().save(r.locked / "f.safetensors")  # real files behind the locked door
        (r.locked / "f.txt").write_text("banded\n")
        (r.locked / "f.toml").write_text("[fpp]\nsteps = 1\n")
        (r.locked / "f.pt").write_bytes(tiny_ckpt.read_bytes())
        r.lock()
        before = r.listing()
        path = _refused(kind, r, suffix)
        with unprivileged():
            rc = main(args(path, str(weights), str(names), r.root))
        err = _one_error(capsys, command)
        assert rc == 2, err
        assert re.search(CLI_REFUSALS[kind], err) and path[:60] in err, err
        assert r.listing() == before


def _no_work(*args: object, **kwargs: object) -> None:
    raise AssertionError("the work started although an input cannot be read or an output written")


class _Payload:
    """A pickle that runs a shell command when unpickled without restrictions."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("where", ["--weights", "--checkpoint", "inspect --allow-pickle"])
def test_malicious_pickles_are_refused_unrun_in_one_line(
    tmp_path: Path, tiny_ckpt: Path, names: Path, capsys: pytest.CaptureFixture[str], where: str, protocol: int
) -> None:
    import pickle

    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}, protocol=protocol))
    out = tmp_path / "o.safetensors"
    if where == "--weights":
        args, command, message = _pretrain_args(evil, names, out), "pretrain", "could not read CLIP checkpoint"
    elif where == "--checkpoint":
        args, command = [*_pretrain_args(tiny_ckpt, names, out), "--checkpoint", str(evil)], "pretrain"
        message = "cannot be read"
    else:
        args, command, message = ["inspect", str(evil), "--allow-pickle"], "inspect", "weights_only=True"
    assert main([*args, "--quiet"] if command == "pretrain" else args) == 2
    err = _one_error(capsys, command)
    assert message in err and "evil.pt" in err, err
    assert not marker.exists()  # never run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pt", "names.txt"]
