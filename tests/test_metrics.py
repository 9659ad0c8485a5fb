"""Calibration metrics against hand-computed values and a literal loop implementation of the doc."""

from __future__ import annotations

import struct
import sys

import pytest
import torch

from fpp_init import metrics
from fpp_init.errors import MetricInputError, PlotDependencyError


def _two_class(confs: list[float], correct: list[bool]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``[c, 1 - c]`` (c >= 0.5, so class 0 is predicted); label 0 if correct else 1."""
    p = torch.tensor([[c, 1.0 - c] for c in confs], dtype=torch.float64)
    y = torch.tensor([0 if ok else 1 for ok in correct])
    return p, y


# -- literal loop implementation of /work/shared/docs/calibration-metrics.md ---------------------
def _loop_ece_mce(conf: list[float], acc: list[float], n_bins: int = 20) -> tuple[float, float]:
    n, e, m = len(conf), 0.0, 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        idx = [i for i in range(n) if lo < conf[i] <= hi]
        if idx:
            gap = abs(sum(acc[i] for i in idx) / len(idx) - sum(conf[i] for i in idx) / len(idx))
            e += len(idx) / n * gap
            m = max(m, gap)
    return e, m


def _loop_all(p: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    n, k = p.shape
    conf = p.max(1).values.tolist()
    acc = [float(a) for a in (p.argmax(1) == y).tolist()]
    e, m = _loop_ece_mce(conf, acc)
    s = sorted(conf)
    bounds: list[float] = []
    for j in range(21):
        v = s[round(j * (n - 1) / 20)]
        if not bounds or bounds[-1] != v:
            bounds.append(v)
    ae = 0.0
    for j in range(len(bounds) - 1):
        lo, hi = bounds[j], bounds[j + 1]
        idx = [i for i in range(n) if (lo <= conf[i] <= hi if j == 0 else lo < conf[i] <= hi)]
        if idx:
            ae += len(idx) / n * abs(sum(acc[i] for i in idx) / len(idx) - sum(conf[i] for i in idx) / len(idx))
    sc = 0.0
    for c in range(k):
        col = p[:, c].tolist()
        hit = [float(t == c) for t in y.tolist()]
        for b in range(20):
            lo, hi = b / 20, (b + 1) / 20
            idx = [i for i in range(n) if lo < col[i] <= hi]
            if idx:
                sc += (
                    len(idx) / (n * k) * abs(sum(hit[i] for i in idx) / len(idx) - sum(col[i] for i in idx) / len(idx))
                )
    order = sorted(range(n), key=lambda i: -conf[i])
    errs, risks = 0.0, []
    for i, j in enumerate(order, 1):
        errs += 1 - acc[j]
        risks.append(errs / i)
    return {"ece": e, "mce": m, "aece": ae, "sce": sc, "aurc": sum(risks) / n, "acc": sum(acc) / n}


def _all(p: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    return {
        "ece": metrics.ece(p, y),
        "mce": metrics.mce(p, y),
        "aece": metrics.aece(p, y),
        "sce": metrics.sce(p, y),
        "aurc": metrics.aurc(p, y),
        "acc": metrics.accuracy(p, y),
    }


# -- hand-computed cases --------------------------------------------------------------------------
def test_three_samples_by_hand() -> None:
    p = torch.tensor([[0.5, 0.5], [0.75, 0.25], [0.2, 0.8]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1])
    # conf .5 (correct, argmax tie -> class 0), .75 (wrong), .8 (correct), each alone in a bin
    got = _all(p, y)
    assert got["ece"] == pytest.approx((0.5 + 0.75 + 0.2) / 3)
    assert got["mce"] == pytest.approx(0.75)
    assert got["acc"] == pytest.approx(2 / 3)
    assert got["aurc"] == pytest.approx((0 + 1 / 2 + 1 / 3) / 3)  # order .8, .75, .5
    # AECE boundaries [.5, .75, .8]: bin [.5, .75] = {.5 ok, .75 wrong}, bin (.75, .8] = {.8 ok}
    assert got["aece"] == pytest.approx(2 / 3 * abs(0.5 - 0.625) + 1 / 3 * 0.2)
    # SCE: class 0 values (.5,.75,.2) hits (1,0,0); class 1 values (.5,.25,.8) hits (0,1,1)
    assert got["sce"] == pytest.approx((0.5 + 0.75 + 0.2 + 0.5 + 0.75 + 0.2) / 6)
    report = metrics.calibration_report(p, y)
    assert report["ece"] == pytest.approx(100 * got["ece"])
    assert report["sce"] == pytest.approx(100 * got["sce"])
    assert report["acc"] == pytest.approx(100 * 2 / 3)
    assert report["aurc"] == pytest.approx(got["aurc"])  # not scaled
    assert (report["n"], report["k"]) == (3, 2)
    assert type(report["n"]) is int and type(report["k"]) is int  # counts, not floats
    assert all(type(report[k]) is float for k in ("acc", "ece", "mce", "aece", "sce", "aurc"))


def test_confidence_on_a_bin_edge_goes_to_the_lower_bin() -> None:
    # 0.5 is the upper edge of (0.45, 0.5]; 0.53125 lies in (0.5, 0.55]
    p, y = _two_class([0.5, 0.53125], [True, False])
    assert metrics.ece(p, y) == pytest.approx(0.5 * 0.5 + 0.5 * 0.53125)  # separate bins
    bins = metrics.reliability_bins(p, y)
    assert bins.count[9] == 1 and bins.count[10] == 1 and int(bins.count.sum()) == 2
    # float32 input: float32(0.85) equals the edge 17/20 rounded to float32 -> bin (0.8, 0.85]
    col = metrics.reliability_bins(torch.tensor([[0.85, 0.15]], dtype=torch.float32), torch.tensor([0]))
    assert int(col.count[16]) == 1 and int(col.count.sum()) == 1
    p1, y1 = _two_class([1.0], [True])
    assert int(metrics.reliability_bins(p1, y1).count[19]) == 1  # 1.0 is in (0.95, 1]


def test_probability_exactly_zero_is_in_no_bin() -> None:
    p = torch.tensor([[1.0, 0.0]])
    y = torch.tensor([1])  # wrong with full confidence
    assert metrics.ece(p, y) == pytest.approx(1.0)
    # class 0: value 1, no hit -> gap 1; class 1: value 0 with a hit is in no bin -> adds nothing
    assert metrics.sce(p, y) == pytest.approx(1.0 / 2)


def test_all_samples_in_one_bin() -> None:
    p, y = _two_class([0.875] * 4, [True, True, True, False])
    assert metrics.ece(p, y) == pytest.approx(0.125)
    assert metrics.mce(p, y) == pytest.approx(0.125)
    # all confidences equal: a single boundary is left; the single closed bin holds everything
    assert metrics.aece(p, y) == pytest.approx(0.125)
    bins = metrics.reliability_bins(p, y)
    assert int(bins.count[17]) == 4 and int((bins.count > 0).sum()) == 1
    assert torch.isnan(bins.accuracy[0]) and bins.accuracy[17] == pytest.approx(0.75)


def test_single_sample() -> None:
    p = torch.tensor([[0.3, 0.7]], dtype=torch.float64)
    y = torch.tensor([1])
    got = _all(p, y)
    assert got == pytest.approx({"ece": 0.3, "mce": 0.3, "aece": 0.3, "sce": 0.3, "aurc": 0.0, "acc": 1.0})
    wrong = _all(p, torch.tensor([0]))
    assert wrong == pytest.approx({"ece": 0.7, "mce": 0.7, "aece": 0.7, "sce": 0.7, "aurc": 1.0, "acc": 0.0})


def test_single_class() -> None:
    p = torch.ones(3, 1)
    y = torch.zeros(3, dtype=torch.long)
    assert _all(p, y) == pytest.approx({"ece": 0, "mce": 0, "aece": 0, "sce": 0, "aurc": 0, "acc": 1})


def test_empty_bins_do_not_count() -> None:
    p, y = _two_class([0.55, 0.95], [False, True])
    # 18 of 20 bins empty: MCE is the max over the two non-empty ones, nothing is NaN
    assert metrics.mce(p, y) == pytest.approx(0.55)
    assert metrics.ece(p, y) == pytest.approx(0.5 * 0.55 + 0.5 * 0.05)


def test_aece_drops_duplicate_boundaries_from_ties() -> None:
    # sorted (.6, .6, .6, .8, .9): positions round(j * 4 / 20) -> boundaries .6 .6 .6 .8 .9 -> .6 .8 .9
    p, y = _two_class([0.6, 0.8, 0.6, 0.9, 0.6], [True, True, False, False, False])
    # bin [.6, .8]: three .6 (1 right) and .8 (right): acc .5, conf .65; bin (.8, .9]: .9 wrong
    assert metrics.aece(p, y) == pytest.approx(4 / 5 * 0.15 + 1 / 5 * 0.9)
    # without the dedup the first bin would be [.6, .6] and the result 0.38
    assert metrics.aece(p, y) != pytest.approx(0.38)


def test_aece_rounds_positions_half_to_even() -> None:
    # N = 3: j (N-1) / 20 = j / 10; j = 5 gives 0.5 -> 0 and j = 15 gives 1.5 -> 2
    p, y = _two_class([0.55, 0.7, 0.95], [False, True, True])
    assert metrics.aece(p, y) == pytest.approx(2 / 3 * abs(0.5 - 0.625) + 1 / 3 * 0.05)


def test_aurc_ties_keep_input_order() -> None:
    p, y = _two_class([0.7, 0.7], [False, True])
    assert metrics.aurc(p, y) == pytest.approx((1 / 1 + 1 / 2) / 2)
    p, y = _two_class([0.7, 0.7], [True, False])
    assert metrics.aurc(p, y) == pytest.approx((0 + 1 / 2) / 2)


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_literal_loop_implementation(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(157, 7, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 7, (157,), generator=g)
    p = logits.softmax(1)
    assert _all(p, y) == pytest.approx(_loop_all(p, y), abs=1e-12)
    from_logits = {k: getattr(metrics, k)(logits, y, from_logits=True) for k in ("ece", "aece", "sce", "aurc")}
    assert from_logits == pytest.approx({k: v for k, v in _loop_all(p, y).items() if k in from_logits}, abs=1e-12)


def test_accepts_numpy_and_lists() -> None:
    np = pytest.importorskip("numpy")
    p = [[0.5, 0.5], [0.75, 0.25], [0.2, 0.8]]
    assert metrics.ece(np.array(p), np.array([0, 1, 1])) == pytest.approx((0.5 + 0.75 + 0.2) / 3)
    assert metrics.ece(p, [0, 1, 1]) == pytest.approx((0.5 + 0.75 + 0.2) / 3)


@pytest.mark.parametrize(
    ("probs", "labels", "match"),
    [
        ([0.5, 0.5], [0], "shape \\[N, K\\].*\\[1, K\\]"),
        (torch.empty(0, 3), torch.empty(0, dtype=torch.long), "empty"),
        ([[0.5, 0.5]], [0, 1], "labels must have shape \\[1\\]"),
        ([[0.5, 0.5]], [2], "label 2 is out of range for 2 classes"),
        ([[0.5, 0.5]], [-1], "label -1 is out of range"),
        ([[0.5, 0.5]], [0.0], "integer class indices"),
        ([[0.7, 0.7]], [0], "rows must sum to 1; row 0 sums to 1.4"),
        ([[1.5, -0.5]], [0], "must lie in \\[0, 1\\].*from_logits=True"),
        ([[float("nan"), 0.5]], [0], "NaN or Inf"),
    ],
)
def test_bad_input_raises(probs: object, labels: object, match: str) -> None:
    with pytest.raises(MetricInputError, match=match):
        metrics.calibration_report(probs, labels)
    assert issubclass(MetricInputError, ValueError)


def test_bad_n_bins() -> None:
    with pytest.raises(MetricInputError, match="n_bins"):
        metrics.ece([[1.0]], [0], n_bins=0)


def test_reliability_diagram_png(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib")
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 5, generator=g) * 3
    y = torch.randint(0, 5, (300,), generator=g)
    out = tmp_path / "rel.png"
    fig = metrics.reliability_diagram(logits, y, from_logits=True, title="test", path=str(out))
    assert len(fig.axes) == 2
    assert fig.axes[0].get_title() == "test"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (500, 550)


def test_plot_without_matplotlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    # the command installs the extra the way this copy of fpp-init was installed (editable, from this clone)
    with pytest.raises(PlotDependencyError, match=r'pip install -e ".*\[plot\]"') as info:
        metrics.reliability_diagram([[0.6, 0.4]], [0])
    assert isinstance(info.value, ImportError)  # existing `except ImportError` clauses keep working
