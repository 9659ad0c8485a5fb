#!/usr/bin/env python
"""Class-sharded pretraining: 1 process against N processes (torch.distributed, gloo on CPU / NCCL on CUDA).

Each run is ``pretrain_flat_prompt`` on a random-weight CLIP with the ViT-B/16 text-tower shape
(``examples/random_clip.py``), launched as ``torchrun`` would (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``/``MASTER_PORT`` in the environment), one thread per rank. Seconds per step are
``(time of S + 1 steps - time of 1 step) / S`` measured inside the ranks, so model loading and
process-group set-up are left out. It prints one JSON line per world size: seconds per step, speed-up
over one process, and the relative difference of the final ctx from the one-process ctx.

    python examples/benchmark_distributed.py --ranks 1,2 --case dtd --steps 3
    python examples/benchmark_distributed.py --ranks 1,2,4,8 --case imagenet --device cuda   # one GPU per rank
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "classnames"

WORKER = textwrap.dedent(
    """
    import json, sys, time, torch  # device None on CUDA: one GPU per rank (cuda:LOCAL_RANK)
    sys.path.insert(0, sys.argv[1])
    torch.set_num_threads(1)
    import fpp_init
    args = json.loads(sys.argv[2])
    names = json.loads(open(args["names"]).read())[: args["limit"] or None]
    def run(steps):
        start = time.perf_counter()
        p = fpp_init.pretrain_flat_prompt(args["model"], names, steps=steps, seed=0, progress=False,
                                          device=None if args["device"] == "cuda" else args["device"], autocast="off")
        return p, time.perf_counter() - start
    run(1)  # warm-up
    _, one = run(1)
    prompt, many = run(args["steps"] + 1)
    torch.save({"ctx": prompt.ctx, "sec_per_step": (many - one) / args["steps"]}, args["out"])
    """
)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(world: int, args: argparse.Namespace, model: str, tmp: Path) -> dict:
    port = _port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
        if world > 1:
            env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
            env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        spec = {"model": model, "names": str(SHARED / f"{args.case}.json"), "limit": args.limit}
        spec.update(steps=args.steps, device=args.device, out=str(tmp / f"w{world}r{rank}.pt"))
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(HERE), json.dumps(spec)], env=env))
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"a rank failed (exit {p.returncode})")
    import torch

    return torch.load(tmp / f"w{world}r0.pt", weights_only=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", default="1,2", help="world sizes to run, comma-separated (1 first: the reference)")
    ap.add_argument("--case", default="dtd", help="class-name set from ../shared/classnames (default dtd)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N class names")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per rank)")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    import torch
    from random_clip import build_random_clip

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = str(tmp / "vitb16_random.pt")
        torch.save(build_random_clip(512, 12).state_dict(), model)
        base = None
        for world in [int(w) for w in args.ranks.split(",")]:
            got = launch(world, args, model, tmp)
            line = {"case": args.case, "device": args.device, "ranks": world, "threads_per_rank": 1}
            line["sec_per_step"] = round(got["sec_per_step"], 4)
            if base is None:
                base = got
            else:
                line["speedup"] = round(base["sec_per_step"] / got["sec_per_step"], 2)
                rel = float((got["ctx"] - base["ctx"]).norm() / base["ctx"].norm())
                line["ctx_rel_diff_vs_1_rank"] = float(f"{rel:.2e}")
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
