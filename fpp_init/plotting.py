"""Figures (matplotlib, imported on first use: the ``plot`` extra).

Every function returns the ``matplotlib.figure.Figure`` and, given ``path``,
writes it as a PNG atomically. Figures are built with the object API
(``Figure`` + Agg canvas), never ``pyplot``, so no global figure state and no GUI.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._deps import require
from ._io import atomic_write_bytes, check_writable_file
from ._validate import check_int, check_path, check_str
from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "require_matplotlib",
    "plot_reliability",
    "plot_sharpness",
    "sharpness_title",
    "SHARPNESS_LABEL",
    "save_png",
]


def require_matplotlib() -> Any:
    """The ``matplotlib`` module, or :class:`~fpp_init.errors.PlotDependencyError` with the install command."""
    return require("matplotlib", "plot", "plotting")


def _check_output(title: Any, path: Any, dpi: Any = 100) -> None:
    """The options every figure function takes, checked before any drawing (and the output before the work)."""
    check_str(title, "title", allow_none=True)
    check_int(dpi, "dpi", min=10, max=2400)
    if path is not None:
        check_writable_file(check_path(path, "path"), "figure")


def _new_figure(width: float, height: float) -> Figure:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | os.PathLike[str], dpi: int = 100) -> None:
    """Write ``fig`` as a PNG to ``path`` atomically (a 256-colour palette PNG: plots have few colours)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    from PIL import Image  # a dependency of matplotlib

    small = io.BytesIO()
    Image.open(buf).convert("RGB").quantize(colors=256).save(small, format="PNG", optimize=True)
    atomic_write_bytes(path, small.getvalue(), what="figure")


def plot_reliability(bins: Any, *, title: str | None = None, path: str | os.PathLike[str] | None = None) -> Figure:
    """Reliability diagram of :func:`fpp_init.metrics.reliability_bins` output (a ``ReliabilityBins``): 2 axes."""
    _check_output(title, path)
    fig = _new_figure(5.0, 5.5)
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    lower = bins.lower.tolist()
    width = (bins.upper - bins.lower).tolist()
    acc_t = bins.accuracy.nan_to_num(0.0)  # empty bins: 0 (drawn as nothing)
    conf_t = bins.confidence.nan_to_num(0.0)
    gap_t = bins.gap.nan_to_num(0.0)
    ece_pct = 100.0 * float((bins.count.double() * gap_t).sum() / max(bins.total, 1))
    ax.bar(lower, acc_t.tolist(), width=width, align="edge", color="tab:blue", edgecolor="black", label="accuracy")
    gap_bottom = acc_t.minimum(conf_t).tolist()
    gap = gap_t.tolist()
    ax.bar(lower, gap, bottom=gap_bottom, width=width, align="edge", color="tab:red", alpha=0.4, label="gap")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title or "Reliability diagram")
    ax.legend(loc="upper left", title=f"ECE {ece_pct:.2f}")
    hist.bar(lower, bins.count.tolist(), width=width, align="edge", color="gray", edgecolor="black")
    hist.set_xlabel("confidence")
    hist.set_ylabel("samples")
    if path is not None:
        save_png(fig, path)
    return fig


#: The one quantity every panel of the sharpness figure shows, with one sign convention.
SHARPNESS_LABEL = "loss increase 1 − cos (lower is flatter)"


def sharpness_title(results: Sequence[Any]) -> str:
    """The default title of the sharpness figure: the prompts it compares and how to read it."""
    names = ", ".join(r.label for r in results)
    return f"Flatness of {names}: loss increase under perturbation (lower is flatter)"


def plot_sharpness(
    results: Sequence[Any],
    *,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
    dpi: int = 100,
) -> Figure:
    """Sharpness figure of one or more prompts (:class:`~fpp_init.SharpnessResult` objects).

    Every panel shows one quantity, the loss increase ``1 − cos`` between clean and perturbed class
    features (lower is flatter, :data:`SHARPNESS_LABEL`), with perturbations of one size for every
    prompt: (1) under FPP's noise against its scale, one curve per prompt; (2) along one random ctx
    direction (the 1-D landscape slice), if the results carry one; then (3..) one 2-D slice per prompt
    that carries one, on one shared colour scale. ``title`` defaults to :func:`sharpness_title`.
    """
    if not results:
        raise ConfigError("no sharpness results to plot", param="results")
    _check_output(title, path, dpi)
    with_2d = [r for r in results if r.landscape is not None and r.landscape.grid2d is not None]
    with_1d = [r for r in results if r.landscape is not None]
    top = 2 if with_1d else 1
    cols = max(top, len(with_2d))
    rows = 2 if with_2d else 1
    fig = _new_figure(4.0 * cols, 3.6 * rows)
    gs = fig.add_gridspec(rows, cols * top)
    ax_drop = fig.add_subplot(gs[0, 0:cols])
    for r in results:
        ax_drop.plot(r.factors, r.cos_drop, marker="o", label=r.label)
    ax_drop.set_xlabel("noise scale\n(× the std of FPP ctx / cls noise)")
    ax_drop.set_ylabel(SHARPNESS_LABEL)
    ax_drop.set_title("Under FPP embedding noise")
    ax_drop.legend(fontsize="small")
    ax_drop.grid(alpha=0.3)
    if with_1d:
        norms = {r.landscape.norm for r in with_1d}
        unit = "the FPP ctx-noise size" if norms == {"noise"} else "each ctx row norm (filter)"
        ax_1d = fig.add_subplot(gs[0, cols : 2 * cols])
        for r in with_1d:
            land = r.landscape
            assert land is not None
            ax_1d.plot(land.alphas, land.line, label=r.label)
        ax_1d.set_xlabel(f"step along a random ctx direction\n(× {unit})")
        ax_1d.set_ylabel(SHARPNESS_LABEL)
        ax_1d.set_title("1-D landscape slice")
        ax_1d.legend(fontsize="small")
        ax_1d.grid(alpha=0.3)
    if with_2d:
        vmax = max(float(r.landscape.grid2d.max()) for r in with_2d)
        levels = [vmax * i / 12 for i in range(13)] if vmax > 0 else 12
        for j, r in enumerate(with_2d):
            land = r.landscape
            assert land is not None and land.grid2d is not None
            ax = fig.add_subplot(gs[1, j * top : (j + 1) * top])
            a = land.alphas2d
            cs = ax.contourf(a, a, land.grid2d.T.numpy(), levels=levels, cmap="viridis")
            ax.contour(a, a, land.grid2d.T.numpy(), levels=levels, colors="white", linewidths=0.4)
            ax.plot([0], [0], "r+", markersize=10)
            ax.set_title(f"2-D slice: {r.label}", fontsize="medium")
            ax.set_xlabel("direction 1")
            ax.set_ylabel("direction 2")
            ax.set_aspect("equal")
            if j == len(with_2d) - 1:
                fig.colorbar(cs, ax=ax, label=SHARPNESS_LABEL, shrink=0.85)
    fig.suptitle(title or sharpness_title(results), fontsize="medium")
    if path is not None:
        save_png(fig, path, dpi=dpi)
    return fig
