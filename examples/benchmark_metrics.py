"""Time fpp_init.metrics at ImageNet scale (N = 50,000 samples, K = 1,000 classes) on CPU.

    python examples/benchmark_metrics.py [--n 50000] [--k 1000] [--repeat 3]

Synthetic CLIP-like logits (scale 100 x cosine-like scores, the true class boosted so
accuracy is ~60 %). Prints the best of ``--repeat`` runs for every metric alone and for
``calibration_report`` (all metrics, one validation pass), from probabilities and from logits.
"""

from __future__ import annotations

import argparse
import functools
import platform
import time
from collections.abc import Callable

import torch

from fpp_init import metrics


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--k", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, args.k, (args.n,), generator=g)
    scores = torch.randn(args.n, args.k, generator=g) * 0.02 + 0.2
    scores[torch.arange(args.n), labels] += 0.06
    logits = 100.0 * scores
    probs = logits.softmax(dim=1)

    print(
        f"N = {args.n:,}, K = {args.k:,}, float32, CPU, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    rows = [
        (name, functools.partial(getattr(metrics, name), probs, labels))
        for name in ("ece", "mce", "aece", "sce", "aurc", "accuracy")
    ]
    rows.append(("calibration_report (all, probs)", lambda: metrics.calibration_report(probs, labels)))
    rows.append(
        ("calibration_report (all, logits)", lambda: metrics.calibration_report(logits, labels, from_logits=True))
    )
    for name, fn in rows:
        print(f"  {name:34s} {best_of(fn, args.repeat):7.3f} s")
    report = metrics.calibration_report(probs, labels)
    print("  values: " + ", ".join(f"{k} {v:.4g}" for k, v in report.items() if k not in ("n", "k")))


if __name__ == "__main__":
    main()
