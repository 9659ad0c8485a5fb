"""Every shell and Python block of the README and of the docs' guide pages runs as written, in one fresh
working folder (a user following the README, then the guide in its navigation order, from a clone), and
writes nothing outside it.

The codebase pages (generated from ``examples/<repo>/README.md``) hold commands for other repositories,
checked on their real code outside this one; the API reference holds no blocks.

A block that cannot run here says so on its first line, and is skipped with that reason:
``# needs network: ...`` (PyPI, a CLIP download, the Hugging Face Hub) or ``# not run alone: ...``
(lines of another program, the test suite itself). In a shell block, one command can say so in its
trailing comment (``# needs network: ...``, ``# not run here: ...``); the others run.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK_MARKERS = ("# needs network", "# not run alone")
COMMAND_MARKERS = ("# needs network", "# not run here")
OUTPUT_FLAGS = ("--out", "--plot", "--coop", "--hub")

pytestmark = pytest.mark.slow  # a few minutes: every command of the README and the guide


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    code: str

    @property
    def skip_reason(self) -> str | None:
        first = next((line.strip() for line in self.code.splitlines() if line.strip()), "")
        return first.lstrip("# ") if first.startswith(BLOCK_MARKERS) else None


def documents() -> list[str]:
    """README.md, then the guide pages in the order of mkdocs.yml's navigation."""
    nav = re.findall(r"^\s*- (?:[^:\n]+: )?([\w/-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    return ["README.md", *(f"docs/{page}" for page in nav if not page.startswith("reference/"))]


def doc_blocks(name: str) -> list[Block]:
    text = (ROOT / name).read_text()
    found = []
    for m in re.finditer(r"^( *)```(bash|python)\n(.*?)^\1```", text, re.S | re.M):
        code = textwrap.dedent("".join(line[len(m.group(1)) :] + "\n" for line in m.group(3).splitlines()))
        found.append(Block(name, text[: m.start()].count("\n") + 1, m.group(2), code))
    return found


def commands(code: str) -> list[tuple[str, str | None]]:
    """``(command, reason to skip it or None)`` of a shell block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    out = []
    for line in joined.splitlines():
        command, _, comment = line.partition("  #")
        if not command.strip() or command.lstrip().startswith("#"):
            continue
        comment = "#" + comment if comment else ""
        out.append((command.strip(), comment.lstrip("# ") if comment.startswith(COMMAND_MARKERS) else None))
    return out


def _tracked() -> dict[str, str]:
    """sha256 of every file git tracks in the clone (empty outside a git checkout)."""
    try:
        names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {n: hashlib.sha256((ROOT / n).read_bytes()).hexdigest() for n in names.splitlines() if (ROOT / n).is_file()}


BLOCKS = [block for name in documents() for block in doc_blocks(name)]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's working folder: a fresh folder with the clone's examples/ and tests/ (as in a clone)."""
    folder = tmp_path_factory.mktemp("readme")
    for name in ("examples", "tests"):
        shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


@pytest.fixture(scope="module")
def clone_before() -> dict[str, str]:
    return _tracked()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """This interpreter's scripts (fpp-init, torchrun) first on PATH. Where torch was installed into another
    environment than this interpreter's (a shared base venv), its torchrun would start the other Python:
    a `torchrun` for this one stands in."""
    folders = [str(Path(sys.executable).parent)]
    if not (Path(sys.executable).parent / "torchrun").exists():
        shim = tmp_path_factory.mktemp("bin") / "torchrun"
        shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m torch.distributed.run "$@"\n')
        shim.chmod(0o755)
        folders.insert(0, str(shim.parent))
    path = os.pathsep.join([*folders, os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "MPLBACKEND": "Agg"}


def test_the_readme_and_the_guide_have_runnable_blocks() -> None:
    assert len(documents()) >= 10  # the README and the guide pages
    runnable = [b for b in BLOCKS if b.skip_reason is None]
    assert len(runnable) >= 12 and {b.lang for b in runnable} == {"bash", "python"}
    readme = [b for b in runnable if b.doc == "README.md"]
    assert any("fpp-init pretrain --weights random_clip.pt" in b.code for b in readme)  # the offline try


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{b.doc}:{b.line}-{b.lang}" for b in BLOCKS])
def test_block_runs_as_written(block: Block, work: Path, env: dict[str, str], clone_before: dict[str, str]) -> None:
    if block.skip_reason is not None:
        pytest.skip(block.skip_reason)
    if "plot" in block.code or "reliability_diagram" in block.code:
        pytest.importorskip("matplotlib")
    if block.lang == "python":
        out = subprocess.run(
            [sys.executable, "-"], input=block.code, cwd=work, env=env, capture_output=True, text=True, timeout=600
        )
        assert out.returncode == 0, (block.code, out.stderr[-3000:])
        return
    for command, skip in commands(block.code):
        if skip is not None:
            continue
        out = subprocess.run(command, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, (command, out.stderr[-3000:])
        words = shlex.split(command)
        for flag in OUTPUT_FLAGS:
            if flag in words:
                assert (work / words[words.index(flag) + 1]).exists(), (command, flag)


def test_the_blocks_wrote_only_into_the_working_folder(work: Path, clone_before: dict[str, str]) -> None:
    assert _tracked() == clone_before  # no tracked file of the clone changed (docs/sharpness_tiny.png, ...)
    assert (work / "try.safetensors").is_file() and (work / "fpp.safetensors").is_file()
