"""Does the H&E term's cross-validated gain on the measured spots predict its effect on hidden spots?

Usage (from the repository root)::

    python benchmarks/he_term_check.py --out benchmarks/results/he_term_check.md
    python benchmarks/he_term_check.py --slides her2st --phases 0,1,2,3 --out benchmarks/results/he_term_phases.md

For every shared slide with an H&E image (the hold-out task of ``run_s2s.py``, phase 0; ``--phases``:
the other cosets of the measured lattice too, the same geometry with other spots measured), plain
kriging against kriging + H&E term (no PCA, the kriging parameters fitted once on the measured spots):

* the cross-validated error (each gene divided by its variance) with K = 2, 5, 10 folds and
  leave-one-out, i.e. from sparser to denser geometries than the benchmark's 5-fold one;
* per gene, whether the cross-validated gain and the gain in hidden-spot PCC agree (correlation over
  genes; median PCC when each gene takes the H&E term only where its own CV error drops);
* the hidden-spot median PCC when the term's standardised predictors are clipped to the range they
  span at the measured spots (no extrapolation of the linear term). The engine clips since
  (``he_clip.py``); the other columns fit the term unclipped (``clip_histology=False``), as it was
  when this table was made.

This is a diagnostic of the choice rule, run with the hidden spots: nothing here feeds a method.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from run_benchmark import data_dir  # noqa: E402

SLIDES = (
    "her2st_B4.h5ad",
    "her2st_C2.h5ad",
    "st_mouse_olfactory_bulb.h5ad",
    "visium_mouse_brain",
    "visium_mouse_brain_dg.h5ad",
)


def cv_errors(bp, choice, k: int, repeats: int) -> np.ndarray:
    """(m, G) squared errors of ``choice`` by K-fold CV over the measured spots (averaged over repeats)."""
    m, g = bp.values.shape
    err = np.zeros((m, g))
    for r in range(repeats):
        folds = np.random.default_rng(r).permutation(m) % k
        for f in range(k):
            te, tr = np.flatnonzero(folds == f), np.flatnonzero(folds != f)
            den, mu, solver = bp._fit_smoother(choice, tr)
            term = bp._fit_term(den, mu, solver, tr) if choice.histology else None
            pred = bp._predict_with(den, mu, solver, term, bp.phys[te], tr, te)
            err[te] += (np.maximum(pred, 0) - bp.values[te]) ** 2
    return err / repeats


def main(argv: list[str] | None = None) -> int:
    from napari_s2s.core.data.histology_features import feature_function
    from napari_s2s.core.data.io import read_slide
    from napari_s2s.core.data.lattice import physical
    from napari_s2s.core.evaluation.benchmark import build_holdout, score
    from napari_s2s.core.methods.s2s import to_lattice
    from napari_s2s.core.smoothing.base import BaseChoice, BasePredictor
    from napari_s2s.core.smoothing.gaussian import gene_weights

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--slides", default=None, help="comma-separated slide name prefixes (default: all five)")
    ap.add_argument("--phases", default="0", help="comma-separated measured cosets, 0-3 (default: 0)")
    a = ap.parse_args(argv)
    only = a.slides.split(",") if a.slides else None
    phases = [int(x) for x in a.phases.split(",")]
    cmd = " ".join(["python benchmarks/he_term_check.py", *(sys.argv[1:] if argv is None else argv)])
    lines = [
        "# The H&E term: cross-validated gain vs hidden-spot effect",
        "",
        f"`{cmd}` (see its docstring). CV error: mean over spots and genes of the",
        "squared error, each gene divided by its variance; change = kriging + H&E against kriging.",
        "",
        "| slide (measured) | K=2 | K=5 | K=10 | leave-one-out | hidden median PCC kriging -> + H&E | genes CV says help | corr(CV gain, PCC gain) over genes | median PCC, per-gene choice by CV | + H&E, predictors clipped |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    plain, he = BaseChoice(), BaseChoice(histology=True)
    tasks = [(fname, ph) for fname in SLIDES if not only or any(fname.startswith(o) for o in only) for ph in phases]
    for fname, phase in tasks:
        task, truth, meta = build_holdout(read_slide(data_dir() / fname), seed=0, phase=phase)
        lr, lc, tr, tc = to_lattice(task)
        offset = (int(task.measured_rows[0] - 2 * lr[0]), int(task.measured_cols[0] - 2 * lc[0]))
        feat = feature_function(task.histology, task.kind, scale=1.0, offset=offset)
        values = np.asarray(task.measured_values, np.float64)
        phys = physical(lr, lc, task.kind)
        f_meas = np.asarray(feat(2 * lr, 2 * lc), np.float64)
        bp = BasePredictor(seed=0, components=(), clip_histology=False).fit(phys, values, None, None, f_meas)
        gw = gene_weights(values)
        m = len(values)
        cells = []
        for k, reps in ((2, 6), (5, 4), (10, 2), (m, 1)):
            e0 = (cv_errors(bp, plain, k, reps) * gw).mean()
            e1 = (cv_errors(bp, he, k, reps) * gw).mean()
            cells.append(f"{100 * (e1 / e0 - 1):+.1f} %")
        gain = (cv_errors(bp, plain, 5, 4) - cv_errors(bp, he, 5, 4)).mean(axis=0) * gw
        dst = physical(tr / 2.0, tc / 2.0, task.kind)
        pcc = []
        for choice in (plain, he):
            b = BasePredictor(seed=0, clip_histology=False).refit(phys, values, bp.kriging, choice, None, None, f_meas)
            pred = np.maximum(b.predict(dst, np.asarray(feat(tr, tc), float) if b.uses_histology else None), 0)
            pcc.append(
                np.array([np.nan if v["pcc"] is None else v["pcc"] for v in score(task, truth, pred, meta).values()])
            )
        b = BasePredictor(seed=0).refit(phys, values, bp.kriging, he, None, None, f_meas)  # clipped (default)
        clipped = np.maximum(b.predict(dst, np.asarray(feat(tr, tc), float)), 0)
        pcc_clip = [np.nan if v["pcc"] is None else v["pcc"] for v in score(task, truth, clipped, meta).values()]
        ok = np.isfinite(pcc[0]) & np.isfinite(pcc[1])
        corr = np.corrcoef(gain[ok], (pcc[1] - pcc[0])[ok])[0, 1]
        mixed = np.where(gain > 0, pcc[1], pcc[0])
        lines.append(
            f"| {meta['name']}{f' phase {phase}' if phases != [0] else ''} ({m}) | "
            + " | ".join(cells)
            + f" | {np.nanmedian(pcc[0]):.3f} -> "
            f"{np.nanmedian(pcc[1]):.3f} | {(gain > 0).sum()}/{len(gain)} | {corr:.2f} | {np.nanmedian(mixed):.3f} | {np.nanmedian(pcc_clip):.3f} |"
        )
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if a.out:
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
