"""The README's newcomer path runs as written: its offline block, command by command, in a fresh folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _block(title: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(title) :]
    code = re.search(r"```bash\n(.*?)```", section, re.S)
    assert code is not None
    return [line.split("  #")[0].strip() for line in code.group(1).splitlines() if line.strip()]


def test_offline_try_block_runs_as_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    lines = _block("### No CLIP weights at hand?")
    assert any(line.startswith("fpp-init pretrain --weights random_clip.pt") for line in lines)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")  # as in a clone
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    for line in lines:
        if line.startswith("python -m pip"):
            continue  # the test environment has the extras
        out = subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, (line, out.stderr[-2000:])
    assert (tmp_path / "try.safetensors").is_file()
    assert (tmp_path / "try.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
