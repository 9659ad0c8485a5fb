"""Simple mistakes are answered before torch is imported (importing torch takes seconds): each case runs
the CLI in a fresh interpreter in which importing torch fails, and torch must not be in sys.modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_RUNNER = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise AssertionError("torch was imported before the mistake was answered")
        return None

sys.meta_path.insert(0, NoTorch())
from fpp_init.cli import main

rc = main(sys.argv[1:])
assert "torch" not in sys.modules, "torch was imported"
sys.exit(rc)
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("early")
    (root / "names.txt").write_text("banded\nblotchy\n")
    (root / "model.pt").write_bytes(b"not read: the mistake is elsewhere")
    (root / "zoo.toml").write_text('backbones = ["absent.pt"]\nclasses = ["agnostic"]\n')
    (root / "zoo2.toml").write_text('backbones = ["model.pt"]\nclasses = ["pets.txt"]\n')
    (root / "pets.txt").write_text("cat\ndog\ncat\n")
    return root


N, W, OUT = ["--classnames", "names.txt"], ["--weights", "model.pt"], ["--out", "o.safetensors"]
CASES = [
    (["pretrain", "--weights", "nosuch.pt", *N, *OUT], "--weights 'nosuch.pt': no such file or folder"),
    (["pretrain", "--arch", "ViT-X/99", *N, *OUT], "unknown CLIP model 'ViT-X/99'"),
    (["pretrain", "--arch", "open_clip:ViT-B-16/absent.pt", *N, *OUT], "OpenCLIP checkpoint not found: 'absent.pt'"),
    (["pretrain", "--arch", "hf:./absent", *N, *OUT], "transformers model folder not found: './absent'"),
    (["pretrain", *W, *N, *OUT, "--checkpoint", "/sys/run.ckpt"], "cannot write --checkpoint '/sys/run.ckpt'"),
    (["pretrain", *W, *N, *OUT, "--device", "gpu"], "--device 'gpu' is not a device name"),
    (["pretrain", *W, *N, *OUT, "--num-classes", "5"], "--num-classes is only for --class-agnostic"),
    (["pretrain", *W, *N, *OUT, "--checkpoint-every", "0"], "--checkpoint-every must be an int >= 1"),
    (["pretrain", *W, *N, *OUT, "--template", "a {} photo"], "places the class name"),
    (["pretrain", *W, *N, "--out", "/sys/o.safetensors"], "cannot write --out"),
    (["pretrain", *W, "--classnames", "pets.txt", *OUT], "'cat' (line 1 and line 3) is given more than once"),
    (["inspect", "nosuch.safetensors"], "prompt file not found: 'nosuch.safetensors'"),
    (["inspect", "OWNER/REPO/p.safetensors"], "For a Hugging Face Hub file use hf://OWNER/REPO/p.safetensors"),
    (["export", "nosuch.safetensors", "--coop", "o.pth"], "prompt file not found: 'nosuch.safetensors'"),
    (["export", "a.safetensors", "b.safetensors", "--out", "o.safetensors"], "--out takes exactly one SOURCE"),
    (["push", "nosuch.safetensors", "--repo-id", "me/prompts"], "prompt file not found: 'nosuch.safetensors'"),
    (["push", "names.txt", "--repo-id", "not a repo"], "--repo-id 'not a repo' must be OWNER/NAME"),
    (["sharpness", "--weights", "nosuch.pt", "a photo of a", *N], "--weights 'nosuch.pt': no such file"),
    (["sharpness", *W, "nosuch.safetensors", *N], "prompt file not found: 'nosuch.safetensors'"),
    (["sharpness", *W, "nosuch.safetensors", *N, "--plot", "p.png"], "prompt file not found: 'nosuch.safetensors'"),
    (["sharpness", *W, "a photo of a", *N, "--draws", "0"], "draws must be an int in [1, "),
    (["sharpness", *W, "a photo of a", *N, "--factors", "1,x"], "argument --factors: must be comma-separated numbers"),
    (["zoo", "nosuch.toml", "--out", "z"], "zoo spec not found: 'nosuch.toml'"),
    (["zoo", "zoo.toml", "--out", "z"], "CLIP checkpoint not found"),
    (["zoo", "zoo2.toml", "--out", "z"], "'cat' (line 1 and line 3) is given more than once"),
]


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(a[:3]) for a, _ in CASES])
def test_refused_before_torch_is_imported(work: Path, argv: list[str], message: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-c", _RUNNER, *argv], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"fpp-init {argv[0]}: error: ") and out.stderr.count("\n") == 1, out.stderr
    assert message in out.stderr, out.stderr
    assert not (work / "o.safetensors").exists() and not (work / "z").exists()
