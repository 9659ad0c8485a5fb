"""Paths the OS refuses, for real: a file in a mode-000 folder (read by an unprivileged user), a file
name longer than the file system allows, a path longer than PATH_MAX, characters no file system
can store.

Root ignores mode bits, so when the tests run as root the call under test runs with the effective
user and group ids of ``nobody`` (65534) and gets the kernel's own ``EACCES``; the ids are restored
afterwards (the real and saved ids stay root). Modules a call imports lazily are imported first:
``nobody`` may not be able to read the interpreter's library.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534
LONG_NAME = "x" * 300
LONG_PATH = "/".join(["d" * 200] * 25)  # 5 000 characters


def _preload() -> None:
    import importlib

    import fpp_init.api._zoo
    import fpp_init.cli  # noqa: F401
    from fpp_init.models.clip import import_clip

    toml = "tomllib" if sys.version_info >= (3, 11) else "tomli"
    for name in (toml, "huggingface_hub.file_download", "huggingface_hub.hf_api", "huggingface_hub.utils"):
        importlib.import_module(name)
    import_clip()


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block with the permissions of an ordinary user (``nobody`` when the tests run as root)."""
    if os.geteuid() != 0:
        yield
        return
    _preload()
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@dataclass
class Refused:
    """``root``: a folder everybody may read and write; ``locked``: a mode-000 folder in it holding
    ``locked_file`` (a copy of whatever the test puts there) and nothing else readable."""

    root: Path
    locked: Path

    def lock(self) -> None:
        os.chmod(self.locked, 0)

    def unlock(self) -> None:
        os.chmod(self.locked, 0o755)

    def listing(self) -> list[str]:
        """Everything under ``root`` (the locked folder's content included), to compare before / after."""
        self.unlock()
        try:
            return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*"))
        finally:
            self.lock()


@contextlib.contextmanager
def refused_folder() -> Iterator[Refused]:
    root = Path(tempfile.mkdtemp(prefix="fpp-refused-"))
    try:
        os.chmod(root, 0o777)
        locked = root / "locked"
        locked.mkdir()
        yield Refused(root, locked)
    finally:
        os.chmod(root / "locked", 0o755)
        shutil.rmtree(root)
