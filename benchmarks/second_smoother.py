"""Diagnosis: would a second smoother family in the base predictor's stack help? (base alone, no network)

The base predictor stacks kriging variants (with or without PCA denoising and an H&E term), all on
one kriging smoother. The classical methods that beat it on some slides are Gaussian smoothers
(``gaussian``, ``pca_gaussian``, ``he_gaussian``: the same H&E term on a Gaussian smoother). This
script asks whether a stack of the base *and* such a smoother, with convex weights chosen the way the
base chooses its own (K-fold cross-validation over the measured spots only, each gene divided by its
variance), predicts the hidden spots better than the base alone, before anyone builds it into the
engine (where every member must share one kriging solver today).

For every shared slide and measured coset (``build_holdout`` phase), seed 0:

* ``base``: the engine's base predictor alone (``base_choice.base_only``, rule ``stack``);
* the second smoother alone (``he_gaussian`` on slides with an image, else ``pca_gaussian``; and
  ``gaussian`` on every slide);
* ``stack``: convex weights over {base, second smoother(s)} fitted on their K-fold predictions of the
  measured spots (each fold's spots predicted from the other folds, the base refitted with its own
  inner cross-validation on them), applied to their hidden-spot predictions.

Hidden spots only score. Usage::

    python benchmarks/second_smoother.py --phases 0,1,2,3 --out benchmarks/results/second_smoother.md
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from base_choice import base_only
from run_benchmark import HERE, shared_slides  # noqa: E402


def _fold_task(task, train: np.ndarray, test: np.ndarray):
    """The task of predicting measured spots ``test`` from measured spots ``train``."""
    allg = task.measured_all_genes
    return dataclasses.replace(
        task,
        measured_rows=task.measured_rows[train],
        measured_cols=task.measured_cols[train],
        measured_values=task.measured_values[train],
        measured_all_genes=None if allg is None else allg[train],
        target_rows=task.measured_rows[test],
        target_cols=task.measured_cols[test],
    )


def _predictors(task, second: list[str]):
    """Functions ``task -> (t, G)`` of the base and the second smoothers."""
    from napari_s2s.core.methods.base import METHODS, load_all

    load_all()

    def base(t):
        return np.asarray(base_only(t, "stack")[0], np.float64)

    def method(name):
        return lambda t: np.asarray(METHODS[name]().predict(t), np.float64)

    return {"base": base, **{name: method(name) for name in second}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phases", default="0,1,2,3")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--slides", default="", help="substrings of slide names (default: all shared slides)")
    ap.add_argument("--out", default=str(HERE / "results" / "second_smoother.md"))
    args = ap.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import torch

    from napari_s2s.core.evaluation.benchmark import build_holdout, score, summarise
    from napari_s2s.core.smoothing.base import stack_weights
    from napari_s2s.core.smoothing.gaussian import gene_weights

    torch.set_num_threads(1)
    phases = [int(p) for p in args.phases.split(",")]
    keys = [k for k in args.slides.split(",") if k]
    rows, diffs = [], []
    t0 = time.time()
    for slide in shared_slides(keys):
        for phase in phases:
            task, truth, meta = build_holdout(slide, seed=0, phase=phase)
            second = ["he_gaussian" if task.histology is not None else "pca_gaussian", "gaussian"]
            preds = _predictors(task, second)
            m = len(task.measured_rows)
            folds = np.random.default_rng(0).permutation(m) % args.folds
            cv = {k: np.zeros(task.measured_values.shape) for k in preds}
            hidden = {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for f in range(args.folds):
                    te, tr = np.flatnonzero(folds == f), np.flatnonzero(folds != f)
                    sub = _fold_task(task, tr, te)
                    for k, fn in preds.items():
                        cv[k][te] = fn(sub)
                for k, fn in preds.items():
                    hidden[k] = fn(task)
            y = np.asarray(task.measured_values, np.float64)
            sw = np.sqrt(gene_weights(y))
            names = list(preds)
            flat = np.stack([(cv[k] * sw).ravel() for k in names])
            w = stack_weights(flat @ flat.T, flat @ (y * sw).ravel())
            stacked = sum(wi * hidden[k] for wi, k in zip(w, names))
            scores = {k: summarise(score(task, truth, hidden[k], meta), 0)["pcc_median"] for k in names}
            scores["stack"] = summarise(score(task, truth, stacked, meta), 0)["pcc_median"]
            diffs.append(scores["stack"] - scores["base"])
            weights = ", ".join(f"{k} {wi:.2f}" for k, wi in zip(names, w) if wi > 0)
            cells = [meta["name"], str(phase), *(f"{scores[k]:.3f}" for k in ("base", second[0], "gaussian", "stack"))]
            rows.append(
                "| " + " | ".join(cells + [second[0], weights, f"{scores['stack'] - scores['base']:+.3f}"]) + " |"
            )
            print(rows[-1], flush=True)
    d = np.asarray(diffs)
    se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    argv_s = " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# A second smoother family in the base's stack? (base alone, hidden-spot median PCC)",
        "",
        f"Command: `python benchmarks/second_smoother.py {argv_s}` ({time.time() - t0:.0f} s). Seed 0; "
        f"{args.folds}-fold cross-validation over the measured spots chooses the weights; hidden spots only score.",
        "",
        "| slide | phase | base | second smoother | gaussian | stack | second smoother is | stack weights | stack - base |",
        "|---|---:|---:|---:|---:|---:|---|---|---:|",
        *rows,
        "",
        f"Mean change, stack against the base alone: {d.mean():+.4f} (standard error {se:.4f}; "
        f"up on {(d > 0).sum()}, down on {(d < 0).sum()} of {len(d)} tasks).",
        "",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-3:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
