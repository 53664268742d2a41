"""Figure of a benchmark result: per-slide median PCC per method, and per-gene PCC against ``linear``.

Uses matplotlib's Agg backend (no display needed); never imports napari or Qt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .benchmark import order_methods

#: The reference method of the per-gene scatter plots.
REFERENCE = "linear"


def plot_benchmark(result: dict, out: str | Path, reference: str = REFERENCE, format: str | None = None) -> Path:
    """Write a PNG: bars of median PCC per slide and method (top), and for every other method a
    scatter of per-gene PCC against ``reference`` over all slides (bottom; points above the
    diagonal are genes where the method beats the reference).

    Parameters
    ----------
    result
        The record returned by :func:`~napari_s2s.core.evaluation.benchmark.run_benchmark` (or read from its JSON).
    out
        Output PNG path.
    reference
        Method on the x axis of the scatter plots.
    format
        Image format (``"png"``, ``"pdf"``, ``"svg"``, ...); ``None``: from the suffix of ``out``.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    slides = result.get("slides", [])
    methods = order_methods(m for s in slides for m, v in s["methods"].items() if "error" not in v)
    others = [m for m in methods if m != reference]
    has_ref = reference in methods
    n_sc = len(others) if has_ref else 0
    ncols = max(1, min(4, n_sc))
    nrows_sc = int(np.ceil(n_sc / ncols)) if n_sc else 0
    fig = Figure(figsize=(max(8.0, 3.2 * ncols), 4.0 + 3.2 * nrows_sc), layout="constrained")
    grid = fig.add_gridspec(1 + nrows_sc, ncols, height_ratios=[1.3] + [1.0] * nrows_sc)

    ax = fig.add_subplot(grid[0, :])
    cmap = matplotlib.colormaps["tab10"]
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(slides))
    for k, m in enumerate(methods):
        vals = [s["methods"].get(m, {}).get("pcc_median") for s in slides]
        vals = [np.nan if v is None else v for v in vals]
        ax.bar(x + (k - (len(methods) - 1) / 2) * width, vals, width, label=m, color=cmap(k % 10))
    ax.set_xticks(x, [s["name"] for s in slides], rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("median PCC over genes (hidden spots)")
    ax.set_title("Hold-out benchmark: 1/4 of the spots measured, the rest predicted")
    ax.axhline(0, color="0.5", lw=0.5)
    if methods:
        ax.legend(ncols=min(len(methods), 6), fontsize=8, loc="upper left")

    if has_ref:
        for k, m in enumerate(others):
            a = fig.add_subplot(grid[1 + k // ncols, k % ncols])
            xs, ys = [], []
            for s in slides:
                ref = s["methods"].get(reference, {}).get("per_gene", {})
                cur = s["methods"].get(m, {}).get("per_gene", {})
                for g, v in cur.items():
                    r = ref.get(g, {}).get("pcc")
                    if v.get("pcc") is not None and r is not None:
                        xs.append(r)
                        ys.append(v["pcc"])
            xs_a, ys_a = np.asarray(xs), np.asarray(ys)
            a.scatter(xs_a, ys_a, s=6, alpha=0.5, color=cmap(methods.index(m) % 10))
            lo = min([-0.2, *(xs_a.tolist() or [0]), *(ys_a.tolist() or [0])])
            a.plot([lo, 1], [lo, 1], color="0.4", lw=0.7)
            a.set_xlim(lo, 1)
            a.set_ylim(lo, 1)
            better = int((ys_a > xs_a).sum())
            a.set_title(f"{m} > {reference}: {better}/{len(xs)} genes", fontsize=9)
            a.set_xlabel(f"PCC {reference}", fontsize=8)
            a.set_ylabel(f"PCC {m}", fontsize=8)
            a.tick_params(labelsize=7)
    out = Path(out)
    fig.savefig(out, dpi=110, format=format)
    return out


def plot_formats() -> set[str]:
    """File formats :func:`plot_benchmark` can write (by suffix, without the dot)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return set(FigureCanvasBase.get_supported_filetypes())
