"""Calibration metrics as the FPP / C-TPT / O-TPT papers report them, vectorised.

Every function takes ``probs`` ``[N, K]`` (softmax probabilities; pass
``from_logits=True`` to give logits instead) and integer ``labels`` ``[N]``,
as torch tensors, NumPy arrays or nested lists, and returns a Python float.

Definitions (``c_i = max_k probs[i, k]``, ``ŷ_i = argmax_k`` (first index on
ties), ``a_i = [ŷ_i == y_i]``, ``B = n_bins = 20``):

* :func:`ece`: equal-width bins ``(lo, hi]`` over [0, 1], edges ``j / B``; a
  confidence of exactly 0 falls in no bin;
  ``Σ_b (n_b / N) · |acc_b − conf_b|`` over non-empty bins.
* :func:`mce`: same bins; ``max_b |acc_b − conf_b|`` over non-empty bins.
* :func:`aece`: equal-mass bins. Sort the confidences ascending (``s``), take
  the boundaries ``s[p_j]`` at positions ``p_j = round(j · (N − 1) / B)``,
  ``j = 0..B`` (the exact value, rounded half to even), drop consecutive
  duplicate boundary *values*; bin ``j`` is ``(b_j, b_{j+1}]``, except the first,
  ``[b_0, b_1]``; same weighted sum as ECE. When every confidence is equal only
  one boundary is left: then the single bin ``[b_0, b_0]`` holds every sample.
* :func:`sce`: for every class ``k``, the ECE bins over ``probs[:, k]`` with
  ``acc = [y == k]``; ``Σ_k Σ_b n_bk / (N·K) · |acc_bk − conf_bk|``.
* :func:`aurc`: sort samples by confidence, descending (stable: ties keep
  their input order); risk at coverage ``i`` = errors among the first ``i`` /
  ``i``; AURC = mean of the risks over ``i = 1..N``.
* :func:`accuracy`: mean of ``a_i``.

**Scale.** The functions return raw fractions in [0, 1]. The papers report
every metric ×100 except AURC; :func:`calibration_report` returns that
scaling (``ece``, ``mce``, ``aece``, ``sce``, ``acc`` ×100, ``aurc`` raw).

Bin edges are ``j / B`` rounded to the dtype of the probabilities, so a
confidence that equals an edge in that dtype (``0.5``, ``float32(0.15)``)
falls in the bin below it, as ``(lo, hi]`` says. Sums are accumulated in
float64. Inputs are validated: probabilities must be finite, in [0, 1] and
rows must sum to 1 (``atol`` 1e-3, 1e-2 for 16-bit dtypes); labels must be
integers in ``[0, K)``; bad input raises :class:`~fpp_init.errors.MetricInputError`.

:func:`reliability_diagram` draws the ECE bins with matplotlib
(the ``plot`` extra).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from . import constants as const
from ._validate import check_bool, check_int
from .errors import MetricInputError
from .plotting import plot_reliability

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "ece",
    "mce",
    "aece",
    "sce",
    "aurc",
    "accuracy",
    "calibration_report",
    "reliability_bins",
    "reliability_diagram",
    "ReliabilityBins",
    "DEFAULT_BINS",
]

#: Bins used everywhere by the papers.
DEFAULT_BINS = 20


# -- input handling ---------------------------------------------------------------------------
def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise MetricInputError(f"{name} must be a tensor, an array or a nested list of numbers: {exc}") from exc


def _check_bins(n_bins: int) -> int:
    return check_int(n_bins, "n_bins", min=1, max=const.MAX_BINS, error=MetricInputError)


def _prepare(probs: Any, labels: Any, from_logits: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated ``(probs [N, K] float on CPU, labels [N] int64)``."""
    check_bool(from_logits, "from_logits", error=MetricInputError)
    p = _as_tensor(probs, "logits" if from_logits else "probs")
    y = _as_tensor(labels, "labels")
    what = "logits" if from_logits else "probs"
    if p.dim() != 2:
        hint = " (a single sample? use shape [1, K])" if p.dim() == 1 else ""
        raise MetricInputError(f"{what} must have shape [N, K], got {tuple(p.shape)}{hint}")
    n, k = p.shape
    if n < 1 or k < 1:
        raise MetricInputError(f"{what} is empty: shape {tuple(p.shape)}; need at least one sample and one class")
    if not p.is_floating_point():
        if p.dtype == torch.bool or p.is_complex():
            raise MetricInputError(f"{what} must be real numbers, got dtype {p.dtype}")
        p = p.double()
    if y.dim() != 1 or y.shape[0] != n:
        raise MetricInputError(f"labels must have shape [{n}] to match {what} {tuple(p.shape)}, got {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise MetricInputError(f"labels must be integer class indices, got dtype {y.dtype}")
    y = y.to(device="cpu", dtype=torch.long)
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= k:
        bad = lo if lo < 0 else hi
        raise MetricInputError(f"label {bad} is out of range for {k} classes (labels must be in [0, {k - 1}])")
    p = p.to("cpu").contiguous()
    if p.dtype in (torch.float16, torch.bfloat16):
        p = p.float()
        atol = 1e-2
    else:
        atol = 1e-3
    lo_v, hi_v = (float(v) for v in torch.aminmax(p))  # NaN propagates; one pass, unlike isfinite
    if not (math.isfinite(lo_v) and math.isfinite(hi_v)):
        raise MetricInputError(f"{what} contains NaN or Inf")
    if from_logits:
        return torch.softmax(p, dim=1), y
    if lo_v < 0.0 or hi_v > 1.0 + 1e-6:
        raise MetricInputError(
            f"probs must lie in [0, 1] (found min {lo_v:.4g}, max {hi_v:.4g}); "
            "if these are logits pass from_logits=True"
        )
    dev = (p.sum(dim=1) - 1.0).abs()
    worst = int(dev.argmax())
    if float(dev[worst]) > atol:
        raise MetricInputError(
            f"probs rows must sum to 1; row {worst} sums to {float(p[worst].sum(dtype=torch.float64)):.6g}. "
            "Apply softmax first, or pass logits with from_logits=True"
        )
    return (p.clamp(max=1.0) if hi_v > 1.0 else p), y


def _edges(n_bins: int, dtype: torch.dtype) -> torch.Tensor:
    return (torch.arange(n_bins + 1, dtype=torch.float64) / n_bins).to(dtype)


def _top1(p: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    conf, pred = p.max(dim=1)
    return conf, (pred == y)


# -- binned statistics ------------------------------------------------------------------------
@dataclass
class ReliabilityBins:
    """Per-bin statistics of the equal-width (ECE) bins.

    Attributes:
        lower, upper: bin edges ``[B]`` (bin ``b`` is ``(lower[b], upper[b]]``).
        count: samples per bin ``[B]`` (int64).
        accuracy, confidence: mean accuracy / confidence per bin ``[B]`` (NaN when empty).
        total: number of samples ``N``.
    """

    lower: torch.Tensor
    upper: torch.Tensor
    count: torch.Tensor
    accuracy: torch.Tensor
    confidence: torch.Tensor
    total: int

    @property
    def gap(self) -> torch.Tensor:
        """``|accuracy − confidence|`` per bin (NaN when empty)."""
        return (self.accuracy - self.confidence).abs()


def _sums(conf: torch.Tensor, correct: torch.Tensor, n_bins: int) -> tuple[torch.Tensor, ...]:
    """Counts, accuracy sums and confidence sums per equal-width bin (float64)."""
    slot = torch.searchsorted(_edges(n_bins, conf.dtype), conf.contiguous())  # 0: conf <= 0, i: bin i-1
    count = torch.bincount(slot, minlength=n_bins + 1)[1:].double()
    acc = torch.bincount(slot, weights=correct.double(), minlength=n_bins + 1)[1:]
    cs = torch.bincount(slot, weights=conf.double(), minlength=n_bins + 1)[1:]
    return count, acc, cs


def _ece_mce(conf: torch.Tensor, correct: torch.Tensor, n_bins: int) -> tuple[float, float]:
    count, acc, cs = _sums(conf, correct, n_bins)
    n = conf.shape[0]
    ece_v = float((acc - cs).abs().sum() / n)
    full = count > 0
    mce_v = float(((acc[full] - cs[full]).abs() / count[full]).max()) if bool(full.any()) else 0.0
    return ece_v, mce_v


def _aece(conf: torch.Tensor, correct: torch.Tensor, n_bins: int) -> float:
    n = conf.shape[0]
    s = torch.sort(conf).values
    pos = []
    for j in range(n_bins + 1):  # round(j (N-1) / B), half to even, in exact integer arithmetic
        q, r = divmod(j * (n - 1), n_bins)
        pos.append(q + 1 if 2 * r > n_bins or (2 * r == n_bins and q % 2 == 1) else q)
    bounds = torch.unique_consecutive(s[torch.tensor(pos)])
    if bounds.numel() == 1:  # every confidence equal: one closed bin [b0, b0]
        slot = torch.zeros(n, dtype=torch.long)
        nb = 1
    else:
        slot = (torch.searchsorted(bounds, conf.contiguous()) - 1).clamp_(min=0)  # first bin is closed
        nb = bounds.numel() - 1
    acc = torch.bincount(slot, weights=correct.double(), minlength=nb)
    cs = torch.bincount(slot, weights=conf.double(), minlength=nb)
    return float((acc - cs).abs().sum() / n)


def _sce(p: torch.Tensor, y: torch.Tensor, n_bins: int) -> float:
    # A row sums to 1, so fewer than n_bins of its entries exceed the first edge 1/B: bin those
    # few individually, and get each class's first bin (0, 1/B] as its column sum minus them
    # (entries equal to 0 belong to no bin and add nothing to a sum). O(N·K) work is then only
    # a column sum and one comparison.
    n, k = p.shape
    edges = _edges(n_bins, p.dtype)
    conf_sum = torch.zeros(k, n_bins, dtype=torch.float64)
    acc_sum = torch.zeros(k, n_bins, dtype=torch.float64)
    col = p.sum(dim=0, dtype=torch.float64) if p.dtype == torch.float64 else p.sum(dim=0).double()
    flat = (p.view(-1) > edges[1]).nonzero().view(-1)  # fewer than n_bins per row
    vals = p.view(-1)[flat]
    bins = torch.searchsorted(edges, vals) - 1  # >= 1 here
    conf_sum.view(-1).index_add_(0, (flat % k) * n_bins + bins, vals.double())
    conf_sum[:, 0] = col - conf_sum[:, 1:].sum(dim=1)
    # accuracy: the one entry per sample at its true class
    py = p.gather(1, y[:, None]).view(-1)
    slot = torch.searchsorted(edges, py.contiguous()) - 1  # -1: probability exactly 0, no bin
    keep = slot >= 0
    acc_sum.view(-1).index_add_(0, y[keep] * n_bins + slot[keep], torch.ones(int(keep.sum()), dtype=torch.float64))
    return float((acc_sum - conf_sum).abs().sum() / (n * k))


def _aurc(conf: torch.Tensor, correct: torch.Tensor) -> float:
    order = torch.sort(conf, descending=True, stable=True).indices
    errors = (~correct[order]).double().cumsum(0)
    risk = errors / torch.arange(1, conf.shape[0] + 1, dtype=torch.float64)
    return float(risk.mean())


# -- public -----------------------------------------------------------------------------------
def ece(probs: Any, labels: Any, *, n_bins: int = DEFAULT_BINS, from_logits: bool = False) -> float:
    """Expected calibration error, a fraction in [0, 1] (the papers report ×100)."""
    p, y = _prepare(probs, labels, from_logits)
    conf, correct = _top1(p, y)
    return _ece_mce(conf, correct, _check_bins(n_bins))[0]


def mce(probs: Any, labels: Any, *, n_bins: int = DEFAULT_BINS, from_logits: bool = False) -> float:
    """Maximum calibration error over non-empty ECE bins, a fraction (papers: ×100)."""
    p, y = _prepare(probs, labels, from_logits)
    conf, correct = _top1(p, y)
    return _ece_mce(conf, correct, _check_bins(n_bins))[1]


def aece(probs: Any, labels: Any, *, n_bins: int = DEFAULT_BINS, from_logits: bool = False) -> float:
    """Adaptive (equal-mass) ECE, a fraction (papers: ×100). See the module docstring for the bins."""
    p, y = _prepare(probs, labels, from_logits)
    conf, correct = _top1(p, y)
    return _aece(conf, correct, _check_bins(n_bins))


def sce(probs: Any, labels: Any, *, n_bins: int = DEFAULT_BINS, from_logits: bool = False) -> float:
    """Static classwise calibration error over all ``K`` classes, a fraction (papers: ×100)."""
    p, y = _prepare(probs, labels, from_logits)
    return _sce(p, y, _check_bins(n_bins))


def aurc(probs: Any, labels: Any, *, from_logits: bool = False) -> float:
    """Area under the risk-coverage curve, a fraction in [0, 1] (reported raw, not ×100)."""
    p, y = _prepare(probs, labels, from_logits)
    return _aurc(*_top1(p, y))


def accuracy(probs: Any, labels: Any, *, from_logits: bool = False) -> float:
    """Top-1 accuracy, a fraction (papers: ×100)."""
    p, y = _prepare(probs, labels, from_logits)
    return float(_top1(p, y)[1].double().mean())


def calibration_report(
    probs: Any, labels: Any, *, n_bins: int = DEFAULT_BINS, from_logits: bool = False
) -> dict[str, float | int]:
    """All metrics at once, scaled as the papers report them.

    Returns:
        ``{"acc", "ece", "mce", "aece", "sce"}`` ×100 and ``"aurc"`` as a raw fraction (floats),
        plus ``"n"`` (samples) and ``"k"`` (classes) as ints. Validation and the top-1 step run once.
    """
    n_bins = _check_bins(n_bins)
    p, y = _prepare(probs, labels, from_logits)
    conf, correct = _top1(p, y)
    e, m = _ece_mce(conf, correct, n_bins)
    return {
        "acc": 100.0 * float(correct.double().mean()),
        "ece": 100.0 * e,
        "mce": 100.0 * m,
        "aece": 100.0 * _aece(conf, correct, n_bins),
        "sce": 100.0 * _sce(p, y, n_bins),
        "aurc": _aurc(conf, correct),
        "n": int(p.shape[0]),
        "k": int(p.shape[1]),
    }


def reliability_bins(
    probs: Any, labels: Any, *, n_bins: int = DEFAULT_BINS, from_logits: bool = False
) -> ReliabilityBins:
    """Per-bin count, accuracy and confidence of the ECE bins (what a reliability diagram shows)."""
    n_bins = _check_bins(n_bins)
    p, y = _prepare(probs, labels, from_logits)
    conf, correct = _top1(p, y)
    count, acc, cs = _sums(conf, correct, n_bins)
    denom = count.masked_fill(count == 0, math.nan)
    edges = _edges(n_bins, torch.float64)
    return ReliabilityBins(
        lower=edges[:-1],
        upper=edges[1:],
        count=count.long(),
        accuracy=acc / denom,
        confidence=cs / denom,
        total=int(p.shape[0]),
    )


def reliability_diagram(
    probs: Any,
    labels: Any,
    *,
    n_bins: int = DEFAULT_BINS,
    from_logits: bool = False,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Reliability diagram (accuracy per confidence bin, gap to the diagonal, ECE in the legend).

    Needs matplotlib (the ``plot`` extra); raises
    :class:`~fpp_init.errors.PlotDependencyError` without it. Writes a PNG to ``path`` if
    given (atomically) and returns the matplotlib ``Figure`` (two axes: the diagram and a
    histogram of the confidences).
    """
    bins = reliability_bins(probs, labels, n_bins=n_bins, from_logits=from_logits)
    return plot_reliability(bins, title=title, path=path)
