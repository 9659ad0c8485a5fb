"""Class-sharded pretraining on torch.distributed (gloo, CPU): 2 and 3 real processes against 1."""

from __future__ import annotations

import os
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
    with pytest.raises(fpp_init.DistributedError, match="needs a launcher: run under torchrun"):
        fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, steps=1, progress=False, distributed=True)


ZOO_WORKER = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    from fpp_init.api.zoo import build_zoo
    build_zoo(sys.argv[1], sys.argv[2], progress=False)
    """
)


def test_zoo_jobs_are_dealt_out_to_the_ranks(tmp_path: Path) -> None:
    from conftest import build_tiny_clip

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
