"""Writing outputs: checked before any work, every OS error one line naming the path, atomic files and
folders, leftovers of killed writers cleaned up."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from helpers import make_prompt

import fpp_init
import fpp_init.api._pretrain as pretrain_module
from fpp_init._io import atomic_write_bytes, check_writable_file
from fpp_init.cli import main
from fpp_init.errors import OutputError

#: a folder nobody may create files in, root included (sysfs)
DENIED = Path("/sys/fpp-init-test")
LONG = "x" * 300 + ".safetensors"


def _fail(*args: object, **kwargs: object) -> None:
    raise AssertionError("the work started although the output cannot be written")


def _bad_outputs(tmp_path: Path) -> list[tuple[Path, str]]:
    (tmp_path / "existing_dir").mkdir()
    (tmp_path / "a_file").write_text("x")
    return [
        (DENIED / "out.safetensors", "permission denied|operation not permitted"),
        (tmp_path / "existing_dir", "it is an existing folder; give a file name"),
        (tmp_path / LONG, "name is too long|name too long"),
        (tmp_path / "a_file" / "out.safetensors", "is a file, not a folder"),
    ]


@pytest.mark.skipif(os.access("/sys", os.W_OK) and not DENIED.parent.exists(), reason="no sysfs")
def test_pretrain_checks_out_before_any_work(
    tiny_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pretrain_module, "optimize_flat_prompt", _fail)
    names = tmp_path / "names.txt"
    names.write_text("banded\n")
    for out, message in _bad_outputs(tmp_path):
        rc = main(["pretrain", "--weights", str(tiny_ckpt), "--classnames", str(names), "--out", str(out), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert err.startswith("fpp-init pretrain: error: cannot write --out") and re.search(message, err)
        assert err.count("cannot write") == 1, err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "existing_dir", "names.txt"]


def test_checkpoint_path_is_checked_before_any_work(
    tiny_clip: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pretrain_module, "optimize_flat_prompt", _fail)
    (tmp_path / "dir").mkdir()
    with pytest.raises(OutputError, match=r"cannot write checkpoint .*existing folder"):
        fpp_init.pretrain_flat_prompt(tiny_clip, ["a"], steps=1, progress=False, checkpoint=tmp_path / "dir")


def test_export_and_plot_outputs(tmp_path: Path, tiny_ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_prompt().save(tmp_path / "p.safetensors")
    (tmp_path / "dir").mkdir()
    cases = [
        (
            ["export", str(src), "--out", str(DENIED / "o.safetensors")],
            "cannot write --out",
            "permission denied|not permitted",
        ),
        (["export", str(src), "--coop", str(tmp_path / "dir")], "cannot write --coop", "existing folder"),
        (["export", str(src), "--coop", str(tmp_path / LONG)], "cannot write --coop", "too long"),
        (["export", str(src), "--hub", str(DENIED / "hub")], "cannot write --hub", "permission denied|not permitted"),
        (["export", str(src), "--hub", str(src)], "cannot write --hub", "not a folder"),
    ]
    for args, what, why in cases:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert what in err and re.search(why, err) and err.count("\n") == 1, err
        assert err.count("cannot write") == 1, err
    pytest.importorskip("matplotlib")
    args = ["sharpness", "--weights", str(tiny_ckpt), "--classnames", str(tmp_path / "n.txt"), "a photo of a"]
    (tmp_path / "n.txt").write_text("banded\n")
    assert main([*args, "--plot", str(tmp_path / "dir")]) == 2
    assert "cannot write --plot" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "n.txt", "p.safetensors"]


def test_python_api_write_errors_are_output_errors(tmp_path: Path) -> None:
    prompt = make_prompt()
    for path, message in _bad_outputs(tmp_path):
        with pytest.raises(OutputError, match=message):
            prompt.save(path)
        with pytest.raises(OutputError, match=message):
            fpp_init.export_coop(prompt, path)
    with pytest.raises(OutputError, match=r"permission denied|operation not permitted"):
        check_writable_file(DENIED / "x")


_FSIZE = textwrap.dedent(
    """
    import resource, signal, sys, os
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write itself fails with EFBIG: a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
    from fpp_init.cli import main
    sys.exit(main(sys.argv[3:]))
    """
)


def _limited(limit: int, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _FSIZE, "x", str(limit), *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    src = make_prompt(width=4096).save(tmp_path / "big.safetensors")  # 64 KiB of ctx
    out = _limited(20_000, ["export", str(src), "--out", str(tmp_path / "copy.safetensors")], tmp_path)
    assert out.returncode == 2, out.stderr
    assert (
        out.stderr.startswith("fpp-init export: error: cannot write prompt file") and "copy.safetensors" in out.stderr
    )
    assert out.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.safetensors"]  # no temp file left


def test_hub_folder_is_built_whole_or_not_at_all(tmp_path: Path) -> None:
    a = make_prompt(seed=1).save(tmp_path / "a.safetensors")
    b = make_prompt(seed=2).save(tmp_path / "b.safetensors")
    size = a.stat().st_size
    # room for each prompt file but not for the (larger) model card
    out = _limited(
        size + 200,
        [
            "export",
            str(a),
            str(b),
            "--hub",
            str(tmp_path / "hub"),
            "--name",
            "a.safetensors",
            "--name",
            "b.safetensors",
        ],
        tmp_path,
    )
    assert out.returncode == 2 and "cannot write" in out.stderr, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "b.safetensors"]  # no half-built folder


def test_full_disk_leaves_an_existing_hub_folder_as_it_was(tmp_path: Path) -> None:
    a = make_prompt(seed=1).save(tmp_path / "a.safetensors")
    b = make_prompt(seed=2).save(tmp_path / "b.safetensors")
    hub = tmp_path / "hub"
    assert main(["export", str(a), "--hub", str(hub), "--name", "a.safetensors"]) == 0
    before = {p.name: p.read_bytes() for p in hub.iterdir()}
    args = ["export", str(b), str(a), "--hub", str(hub), "--name", "a.safetensors", "--name", "b.safetensors"]
    out = _limited(a.stat().st_size + 200, [*args, "--force"], tmp_path)  # room for a file, not for the card
    assert out.returncode == 2 and "cannot write" in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert {p.name: p.read_bytes() for p in hub.iterdir()} == before  # not a single file replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "b.safetensors", "hub"]


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_leftover_of_a_killed_writer_is_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "p.safetensors"
    dead = tmp_path / f".p.safetensors.{_dead_pid()}-0123abcd.tmp"  # what SIGKILL during a write leaves
    dead.write_bytes(b"half a file")
    alive = tmp_path / f".p.safetensors.{os.getppid()}-4567cdef.tmp"  # a writer still running: kept
    alive.write_bytes(b"being written")
    unrelated = tmp_path / ".other.safetensors.1-0.tmp"
    unrelated.write_bytes(b"")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert not dead.exists() and alive.exists() and unrelated.exists()
    old = time.time() - 2 * 24 * 3600
    os.utime(alive, (old, old))  # ... unless it is days old
    atomic_write_bytes(target, b"newer")
    assert not alive.exists()


@pytest.mark.parametrize("tmpfile", [True, False], ids=["O_TMPFILE", "without O_TMPFILE"])
def test_real_sigkill_leftover_is_harmless_and_cleaned(tmp_path: Path, tmpfile: bool) -> None:
    """Killed between naming the complete temp file and the rename (or, without O_TMPFILE, after writing it)."""
    code = textwrap.dedent(
        f"""
        import os, sys
        from fpp_init import _io
        if not {tmpfile} and hasattr(os, "O_TMPFILE"):
            del os.O_TMPFILE  # a platform without it: the temp file is written under its name
        real = os.replace
        def stop(src, dst):  # killed between writing the temp file and the rename
            print(src, flush=True)
            os.kill(os.getpid(), 9)
        os.replace = stop
        _io.atomic_write_bytes(sys.argv[1], b"x" * 1000)
        """
    )
    target = tmp_path / "p.safetensors"
    proc = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    leftover = Path(proc.stdout.strip())
    assert leftover.exists() and leftover.parent == tmp_path and leftover.name.startswith(".p.safetensors.")
    assert leftover.read_bytes() == b"x" * 1000  # named only once complete
    assert not target.exists()  # readers never see a partial prompt file
    atomic_write_bytes(target, b"ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.safetensors"]


def _unnamed_files_work(folder: Path) -> bool:
    try:
        os.close(os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o600))
    except (AttributeError, OSError):
        return False
    return True


@pytest.mark.parametrize("stop_at", ["fsync", "link"])
def test_sigkill_while_writing_leaves_nothing(tmp_path: Path, stop_at: str) -> None:
    """Killed while the data is written (at the fsync) or just before it gets its name: no trace in the folder."""
    if not _unnamed_files_work(tmp_path):
        pytest.skip("no O_TMPFILE here: the temp file has a name from the start (removed by the next write)")
    code = textwrap.dedent(
        f"""
        import os, sys
        from fpp_init import _io
        def stop(*args, **kwargs):
            os.kill(os.getpid(), 9)
        os.{stop_at} = stop
        _io.atomic_write_bytes(sys.argv[1], b"x" * 100_000)
        """
    )
    target = tmp_path / "p.safetensors"
    proc = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert sorted(os.listdir(tmp_path)) == []


def test_probe_of_an_output_folder_leaves_nothing_when_killed(tmp_path: Path) -> None:
    if not _unnamed_files_work(tmp_path):
        pytest.skip("no O_TMPFILE here")
    code = textwrap.dedent(
        """
        import os, sys
        from fpp_init import _io
        real = os.close
        def stop(fd):
            os.kill(os.getpid(), 9)
        os.close = stop
        _io.check_writable_file(sys.argv[1])
        """
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "o.safetensors")], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert sorted(os.listdir(tmp_path)) == []


def test_sigterm_during_pretrain_leaves_no_output(tiny_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.safetensors"
    names = tmp_path / "n.txt"
    names.write_text("banded\nblotchy\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fpp_init", "pretrain", "--weights", str(tiny_ckpt), "--classnames", str(names)]
        + ["--steps", "100000", "--out", str(out)],
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(8)  # well into the steps (tqdm is on)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.txt"]
