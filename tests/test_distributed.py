"""Class-sharded pretraining on torch.distributed (gloo, CPU): 2 and 3 real processes against 1."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import fpp_init

pytestmark = pytest.mark.slow  # real gloo processes: part of the full suite; skipped by -m 'not slow'

NAMES = ["banded", "blotchy", "braided", "bubbly", "chequered", "cobwebbed", "cracked"]

WORKER = textwrap.dedent(
    """
    import json, sys, torch
    torch.set_num_threads(1)
    import fpp_init
    args = json.loads(sys.argv[1])
    names = args.pop("names")
    out = args.pop("out")
    prompt = fpp_init.pretrain_flat_prompt(args.pop("model"), names, progress=False, **args)
    torch.save({"ctx": prompt.ctx, "loss": prompt.history["loss"]}, out)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_all(procs: list[subprocess.Popen[str]], timeout: float = 300) -> list[subprocess.CompletedProcess[str]]:
    """Wait for every rank; as soon as one fails, stop the others (they would wait for it forever)."""
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0) for p in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:  # also when the test session itself is interrupted: leave no rank behind
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [subprocess.CompletedProcess(p.args, p.wait(), *p.communicate()) for p in procs]


def _rank_env(rank: int, world: int, port: int) -> dict[str, str]:
    env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world)}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    return env


def _launch(world: int, tmp_path: Path, per_rank: list[dict[str, object]]) -> list[subprocess.CompletedProcess[str]]:
    """``world`` ranks as torchrun starts them (environment variables), each with its own arguments."""
    import json

    port = _free_port()
    procs = []
    for rank in range(world):
        args = {**per_rank[rank], "out": str(tmp_path / f"rank{rank}.pt")}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, json.dumps(args)],
                env=_rank_env(rank, world, port),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return _wait_all(procs)


@pytest.mark.parametrize(
    ("world", "options"),
    [
        (2, {}),
        (3, {"chunk_classes": 1}),
        (2, {"share_prefix": False}),
        (3, {"class_agnostic": True, "num_classes": 8}),
        (2, {"autocast": "bf16"}),
    ],
)
def test_sharded_equals_single_process(tiny_ckpt: Path, tmp_path: Path, world: int, options: dict[str, object]) -> None:
    kw = {"steps": 20, "seed": 2, **options}
    names = None if kw.get("class_agnostic") else NAMES
    torch.set_num_threads(1)
    single = fpp_init.pretrain_flat_prompt(str(tiny_ckpt), names, progress=False, distributed=False, device="cpu", **kw)
    runs = _launch(world, tmp_path, [{"model": str(tiny_ckpt), "names": names, **kw}] * world)
    for r in runs:
        assert r.returncode == 0, r.stderr
    got = [torch.load(tmp_path / f"rank{i}.pt", weights_only=True) for i in range(world)]
    for g in got:
        assert torch.equal(g["ctx"], got[0]["ctx"])  # every rank took the same steps
        assert g["loss"] == got[0]["loss"]
    rel = float((got[0]["ctx"] - single.ctx).norm() / single.ctx.norm())
    # fp32: the sum over ranks only reorders float additions; bf16 autocast rounds per matmul shape
    assert rel <= (1e-2 if kw.get("autocast") == "bf16" else 1e-6), rel
    tol = 1e-2 if kw.get("autocast") == "bf16" else 1e-6
    assert got[0]["loss"] == pytest.approx(single.history["loss"], rel=tol, abs=tol)


def test_ranks_with_different_inputs_stop_with_one_line(tiny_ckpt: Path, tmp_path: Path) -> None:
    per_rank = [
        {"model": str(tiny_ckpt), "names": NAMES, "steps": 3},
        {"model": str(tiny_ckpt), "names": NAMES[:-1], "steps": 3},
    ]
    runs = _launch(2, tmp_path, per_rank)
    for r in runs:
        assert r.returncode != 0
        assert "DistributedError" in r.stderr and "the ranks were given different inputs" in r.stderr
    assert not any(tmp_path.glob("rank*.pt"))


def test_distributed_true_without_a_launcher(tiny_clip: torch.nn.Module) -> None:
    with pytest.raises(fpp_init.errors.DistributedError, match="needs a launcher: run under torchrun"):
        fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, steps=1, progress=False, distributed=True)


ZOO_WORKER = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    from fpp_init import build_zoo
    build_zoo(sys.argv[1], sys.argv[2], progress=False)
    """
)


def test_zoo_jobs_are_dealt_out_to_the_ranks(tmp_path: Path) -> None:
    from helpers import build_tiny_clip

    torch.save(build_tiny_clip(64, layers=1).state_dict(), tmp_path / "tiny.pt")
    (tmp_path / "set.txt").write_text("banded\nblotchy\n")
    spec = tmp_path / "zoo.toml"
    spec.write_text('backbones = ["tiny.pt"]\nclasses = ["agnostic", "set.txt"]\nseeds = [0, 1]\n[config]\nsteps = 2\n')
    port = _free_port()
    command = [sys.executable, "-c", ZOO_WORKER, str(spec), str(tmp_path / "out")]
    procs = [
        subprocess.Popen(
            command, env=_rank_env(rank, 2, port), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for rank in range(2)
    ]
    for r in _wait_all(procs):
        assert r.returncode == 0, r.stderr
    built = sorted(p.name for p in (tmp_path / "out").glob("*.safetensors"))
    assert (
        len(built) == 4
        and (tmp_path / "out" / "manifest.json").is_file()
        and (tmp_path / "out" / "README.md").is_file()
    )
    single = fpp_init.pretrain_flat_prompt(
        str(tmp_path / "tiny.pt"), ["banded", "blotchy"], steps=2, seed=1, progress=False, device="cpu"
    )
    assert torch.equal(fpp_init.load_fpp_prompt(tmp_path / "out" / "fpp_tiny_set_seed1.safetensors").ctx, single.ctx)


REPEAT_WORKER = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    import fpp_init
    for i in range(int(sys.argv[2])):  # each call makes its process group and destroys it
        fpp_init.pretrain_flat_prompt(sys.argv[1], ["banded", "blotchy", "braided"], steps=2, progress=False)
    """
)


def test_many_short_runs_end_cleanly(tiny_ckpt: Path) -> None:
    """Each run ends in destroy_process_group right after its last all_reduce: on older torch that
    deadlocked about one run in three when a gloo worker still held the collective's tensor."""
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REPEAT_WORKER, str(tiny_ckpt), "12"],
            env=_rank_env(rank, 2, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    for r in _wait_all(procs, timeout=120):
        assert r.returncode == 0, r.stderr or "killed after 120 s: a rank hung"


# -- the launcher's environment, the rendezvous and lost ranks ----------------------------------------
LAUNCH_ENV = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"}
BAD_LAUNCHES = [
    ({"WORLD_SIZE": "two"}, r"WORLD_SIZE='two' is not a whole number"),
    ({"WORLD_SIZE": "0"}, r"WORLD_SIZE=0 must be >= 1"),
    ({"WORLD_SIZE": "2", "RANK": "5", **LAUNCH_ENV}, r"RANK=5 must be in \[0, 1\]; the ranks are 0 to 1"),
    ({"WORLD_SIZE": "2", "RANK": "-1", **LAUNCH_ENV}, r"RANK=-1 must be in \[0, 1\]"),
    ({"WORLD_SIZE": "1", "RANK": "1"}, r"RANK=1 must be in \[0, 0\]"),
    ({"WORLD_SIZE": "2", **LAUNCH_ENV}, "WORLD_SIZE=2 but RANK is not set"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_PORT": "29999"}, "WORLD_SIZE=2 but MASTER_ADDR is not set"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1"}, "WORLD_SIZE=2 but MASTER_PORT is not set"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "http"}, "MASTER_PORT='http' is not a whole"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "70000"}, r"MASTER_PORT=70000 must be in"),
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "x", **LAUNCH_ENV}, "LOCAL_RANK='x' is not a whole number"),
]


@pytest.fixture
def launch_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(("env", "match"), BAD_LAUNCHES, ids=[str(e) for e, _ in BAD_LAUNCHES])
def test_a_malformed_launcher_environment_is_refused_first(
    tiny_ckpt: Path,
    tmp_path: Path,
    launch_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    match: str,
) -> None:
    from fpp_init.cli import main

    for name, value in env.items():
        launch_env.setenv(name, value)
    start = time.monotonic()
    with pytest.raises(fpp_init.errors.DistributedError, match=match):
        fpp_init.pretrain_flat_prompt(str(tiny_ckpt), NAMES, steps=1, progress=False)
    (tmp_path / "n.txt").write_text("banded\n")
    out = tmp_path / "o.safetensors"
    args = ["pretrain", "--weights", str(tiny_ckpt), "--classnames", str(tmp_path / "n.txt"), "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("fpp-init pretrain: error: ") and err.count("\n") == 1 and re.search(match, err), err
    assert time.monotonic() - start < 10 and not out.exists()
    # distributed=False is a single process whatever the environment says
    assert fpp_init.pretrain_flat_prompt(str(tiny_ckpt), NAMES, steps=1, progress=False, distributed=False).n_ctx == 4


def _cli_rank(rank: int, world: int, port: int, args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fpp_init", *args],
        env=_rank_env(rank, world, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(procs: list[subprocess.Popen[str]], timeout: float) -> list[tuple[int, str]]:
    """Every rank's exit status and stderr; any rank still running after ``timeout`` s is killed (and fails)."""
    deadline = time.monotonic() + timeout
    try:
        return [(p.wait(max(0.1, deadline - time.monotonic())), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    except subprocess.TimeoutExpired:
        raise AssertionError(f"a rank still ran after {timeout} s") from None
    finally:  # leave no rank behind
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.parametrize("rank", [0, 1])
def test_a_rank_whose_peer_never_starts_stops_in_one_line(tiny_ckpt: Path, tmp_path: Path, rank: int) -> None:
    (tmp_path / "n.txt").write_text("banded\nblotchy\n")
    out = tmp_path / "o.safetensors"
    args = ["pretrain", "--weights", str(tiny_ckpt), "--classnames", str(tmp_path / "n.txt"), "--out", str(out)]
    start = time.monotonic()
    ((rc, err),) = _finish([_cli_rank(rank, 2, _free_port(), [*args, "--quiet", "--dist-timeout", "2"])], 60)
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith(f"fpp-init pretrain: error: rank {rank} of 2: the other ranks did not all join within 2 s")
    assert "--dist-timeout" in err and time.monotonic() - start < 45
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.txt"]


@pytest.mark.parametrize(("world", "victim"), [(2, 1), (2, 0), (3, 1)])
def test_a_rank_killed_mid_run_ends_the_others_in_one_line(
    tiny_ckpt: Path, tmp_path: Path, world: int, victim: int
) -> None:
    (tmp_path / "n.txt").write_text("\n".join(NAMES) + "\n")
    ckpt, out = tmp_path / "run.ckpt", tmp_path / "o.safetensors"
    args = ["pretrain", "--weights", str(tiny_ckpt), "--classnames", str(tmp_path / "n.txt"), "--out", str(out)]
    args += ["--quiet", "--steps", "100000", "--checkpoint", str(ckpt), "--checkpoint-every", "1"]
    port = _free_port()
    procs = [_cli_rank(rank, world, port, args) for rank in range(world)]
    try:
        deadline = time.monotonic() + 60
        while not ckpt.exists():  # rank 0 writes it after every step: the ranks are in the run
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "the ranks did not start"
            time.sleep(0.1)
        procs[victim].kill()
        results = _finish([p for r, p in enumerate(procs) if r != victim], 30)
    finally:  # leave no rank behind, whatever happened
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    for rc, err in results:
        assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        named = re.search(r"error: rank \d of \d+: ranks? ([\d, ]+) went away during the run", err)
        assert named and str(victim) in named.group(1).split(", "), err
    assert not out.exists()
