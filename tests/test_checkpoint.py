"""Checkpoint and resume: an interrupted run continued from its checkpoint equals an uninterrupted run, bitwise."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
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
        with pytest.raises(fpp_init.CheckpointError, match="written for other inputs"):
            fpp_init.pretrain_flat_prompt(tiny_clip, names, checkpoint=ckpt, **kw)
        assert ckpt.read_bytes() == data  # never mixed, never overwritten
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(fpp_init.CheckpointError, match="cannot be read"):
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
