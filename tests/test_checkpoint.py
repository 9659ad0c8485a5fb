"""Checkpoint and resume: an interrupted run continued from its checkpoint equals an uninterrupted run, bitwise."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

import fpp_init
from fpp_init.algorithm import optimizer as optimizer_module

NAMES = ["banded", "blotchy", "braided", "bubbly", "chequered"]
RUN = dict(steps=12, seed=3, progress=False)


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Raise KeyboardInterrupt (as Ctrl-C would) when step ``step`` (1-based) begins."""
    real = optimizer_module._Run.step

    def step_or_stop(self: optimizer_module._Run) -> torch.Tensor:
        if len(self.records) + 1 == step:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(optimizer_module._Run, "step", step_or_stop)


@pytest.mark.parametrize(("every", "stop"), [(3, 7), (5, 5), (4, 12), (100, 3)])
def test_interrupt_then_resume_equals_uninterrupted(
    tiny_clip: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: int, stop: int
) -> None:
    whole = fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, **RUN)
    ckpt = tmp_path / "run.ckpt"
    with monkeypatch.context() as m:
        _interrupt_at(m, stop)
        with pytest.raises(KeyboardInterrupt):
            fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, checkpoint=ckpt, checkpoint_every=every, **RUN)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == stop - 1  # the interrupt itself wrote the completed steps
    resumed = fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, checkpoint=ckpt, checkpoint_every=every, **RUN)
    assert torch.equal(resumed.ctx, whole.ctx)  # bitwise, on the CPU
    assert resumed.history == whole.history
    assert not ckpt.exists()  # removed once the result is returned


def test_checkpoint_of_other_inputs_is_refused(
    tiny_clip: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = tmp_path / "run.ckpt"
    with monkeypatch.context() as m:
        _interrupt_at(m, 4)
        with pytest.raises(KeyboardInterrupt):
            fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, checkpoint=ckpt, checkpoint_every=2, **RUN)
    data = ckpt.read_bytes()
    for change in ({"names": NAMES[:3]}, {"seed": 4}, {"lr": 0.02}, {"template": "a picture of a"}):
        kw = {**RUN, **change}
        names = kw.pop("names", NAMES)
        with pytest.raises(fpp_init.errors.CheckpointError, match="written for other inputs"):
            fpp_init.pretrain_flat_prompt(tiny_clip, names, checkpoint=ckpt, **kw)
        assert ckpt.read_bytes() == data  # never mixed, never overwritten
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(fpp_init.errors.CheckpointError, match="cannot be read"):
        fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, checkpoint=ckpt, **RUN)


def test_cli_sigterm_writes_a_checkpoint_and_the_same_command_resumes(tiny_ckpt: Path, tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES))
    out, ckpt = tmp_path / "p.safetensors", tmp_path / "run.ckpt"
    command = [sys.executable, "-m", "fpp_init", "pretrain", "--weights", str(tiny_ckpt), "--classnames", str(names)]
    command += ["--steps", "800", "--seed", "1", "--threads", "1", "--out", str(out), "--quiet"]
    command += ["--checkpoint", str(ckpt), "--checkpoint-every", "100"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline:  # the first periodic checkpoint: well into the run
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert ckpt.exists() and not out.exists()
    done = torch.load(ckpt, weights_only=True)["step"]
    assert 100 <= done < 800
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    whole = tmp_path / "whole.safetensors"
    plain = [c if c != str(out) else str(whole) for c in command[: command.index("--checkpoint")]]
    assert subprocess.run(plain, capture_output=True, text=True, timeout=600).returncode == 0
    assert out.read_bytes() == whole.read_bytes()  # the resumed file is the uninterrupted one, byte for byte
    assert not ckpt.exists()


def test_resumed_run_shows_where_it_stands(
    tiny_clip: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = tmp_path / "run.ckpt"
    with monkeypatch.context() as m:
        _interrupt_at(m, 5)
        with pytest.raises(KeyboardInterrupt):
            fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, checkpoint=ckpt, **RUN)
    capsys.readouterr()
    fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, checkpoint=ckpt, **{**RUN, "progress": True})
    bar = capsys.readouterr().err
    assert "FPP (resumed after step 4)" in bar and " 4/12 " in bar  # counted in the whole run: not 0/8


def test_cli_says_it_resumes_and_ends_with_a_summary(
    tiny_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fpp_init.cli import main

    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES))
    out, ckpt = tmp_path / "p.safetensors", tmp_path / "run.ckpt"
    argv = ["pretrain", "--weights", str(tiny_ckpt), "--classnames", str(names), "--steps", "12", "--out", str(out)]
    argv += ["--checkpoint", str(ckpt), "--checkpoint-every", "2"]
    with monkeypatch.context() as m:
        _interrupt_at(m, 6)
        assert main(argv) == 130
    capsys.readouterr()
    assert main(argv) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.replace("\r", "\n").splitlines() if line.strip()]
    assert lines[0] == f"resuming from {ckpt} after step 5 of 12"
    prompt = fpp_init.load_fpp_prompt(out)
    losses = prompt.final_losses
    summary = lines[-1]
    assert summary.startswith("done: 12 steps (resumed after step 5) in ") and summary.endswith(f"; wrote {out}")
    assert f"final losses: align {losses['align']:.4f}, flat {losses['flat']:.4f}" in summary
    assert captured.out.count("\n") == 1 and '"out": ' in captured.out  # the machine-readable line stays


def test_losses_beside_the_bar_refresh_by_time(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(optimizer_module.time, "monotonic", lambda: now[0])
    clock = optimizer_module._Clock(10**9)  # steps // 100 was 10**7 steps between refreshes
    assert clock.show_losses(1)
    assert not clock.show_losses(2)
    now[0] += 0.6
    assert clock.show_losses(3)


def test_a_huge_step_count_warns_with_the_estimated_time(
    tiny_clip: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        _interrupt_at(m, 7)
        with pytest.warns(fpp_init.errors.LongRunWarning) as caught, pytest.raises(KeyboardInterrupt):
            fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, steps=10**9, progress=False)
    [warning] = caught.list
    text = str(warning.message)
    assert re.match(r"steps=1000000000 will take about [0-9.]+ (days|years) more at [0-9.e-]+ s per", text)
    assert "the paper uses 1000 steps" in text
    with warnings.catch_warnings():  # the paper's count: no warning
        warnings.simplefilter("error", fpp_init.errors.LongRunWarning)
        fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, steps=5, progress=False)
