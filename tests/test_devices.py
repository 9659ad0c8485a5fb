"""One device resolver: every entry point turns a bad or unavailable device into a ConfigError that lists
the devices this machine has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import make_prompt
from standins import get_coop

import fpp_init
from fpp_init._validate import available_devices, check_device
from fpp_init.cli import main
from fpp_init.errors import ConfigError

NO_GPU = not torch.cuda.is_available()
BAD = [
    ("bogus", r"device 'bogus' is not a device name; use one of \['cpu'"),
    (3.5, "device must be a device name such as 'cpu' or 'cuda'"),
    (["cpu"], "device must be a device name"),
    ("cuda:99", "device 'cuda:99'"),
    (
        "mps" if not getattr(torch.backends, "mps", None) or not torch.backends.mps.is_available() else "xla",
        "not available",
    ),
]
if NO_GPU:
    BAD.append(("cuda", r"device 'cuda' is not available: torch sees no CUDA GPU here .*available: cpu"))
    BAD.append((torch.device("cuda", 0), r"device 'cuda:0' is not available"))


@pytest.mark.parametrize(("device", "match"), BAD, ids=[str(d) for d, _ in BAD])
def test_resolver(device: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        check_device(device)
    assert info.value.param == "device"


def test_resolver_accepts_what_exists() -> None:
    assert check_device("cpu") == torch.device("cpu")
    assert check_device(torch.device("cpu")) == torch.device("cpu")
    assert available_devices()[0] == "cpu"


@pytest.mark.parametrize(("device", "match"), BAD, ids=[str(d) for d, _ in BAD])
def test_every_entry_point(
    tiny_clip: torch.nn.Module, tiny_ckpt: Path, tmp_path: Path, device: Any, match: str
) -> None:
    path = make_prompt().save(tmp_path / "p.safetensors")
    calls = [
        lambda: fpp_init.load_fpp_prompt(path, device=device),
        lambda: fpp_init.pretrain_flat_prompt(str(tiny_ckpt), ["a"], device=device, steps=1, progress=False),
        lambda: fpp_init.pretrain_flat_prompt(tiny_clip, ["a"], device=device, steps=1, progress=False),
        lambda: fpp_init.apply(get_coop(tiny_clip, ["a", "b"]), device=device, steps=1, progress=False),
        lambda: fpp_init.sharpness(tiny_clip, "a photo of a", ["a"], device=device, progress=False),
        lambda: make_prompt().to(device),
    ]
    for call in calls:
        with pytest.raises(ConfigError, match=match):
            call()


@pytest.mark.skipif(not NO_GPU, reason="a GPU is present")
@pytest.mark.parametrize("command", ["pretrain", "sharpness"])
def test_cli_device_cuda_without_gpu(
    tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    names = tmp_path / "names.txt"
    names.write_text("banded\nblotchy\n")
    args = [command, "--weights", str(tiny_ckpt), "--classnames", str(names), "--device", "cuda"]
    args += ["--out", str(tmp_path / "x.safetensors"), "--steps", "1"] if command == "pretrain" else ["a photo of a"]
    assert main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--device 'cuda' is not available: torch sees no CUDA GPU here" in err and "available: cpu" in err
    assert not (tmp_path / "x.safetensors").exists()


def test_device_names_checked_without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's early check: torch's own device types pass, a typo is refused; a type an installed torch
    backend plugin may register (entry point torch.backends) is left to torch."""
    from fpp_init import _validate

    assert _validate.check_device_name("cuda:1") == "cuda:1" and _validate.check_device_name(" mps ") == "mps"
    for bad in ("gpu", "cuda:x", "cuda:", "", 3):
        with pytest.raises(ConfigError, match="is not a device name; use 'cpu', 'cuda', 'cuda:N' or 'mps'"):
            _validate.check_device_name(bad)
    monkeypatch.setattr(_validate, "_device_plugins", lambda: True)
    assert _validate.check_device_name("npu:0") == "npu:0"
    with pytest.raises(ConfigError):
        _validate.check_device_name("cuda:x")
