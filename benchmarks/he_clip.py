"""The H&E term with and without clipping its predictors to their measured range, on every shared slide
and measured coset: the base predictor alone and ``he_gaussian``.

The H&E term (:class:`napari_s2s.core.smoothing.ridge.FeatureTerm`) is linear in standardised image
predictors. At target positions whose image features lie outside the range seen at the measured spots
(tissue folds, bubbles, the image's edges), a linear term extrapolates; clipping each predictor to its
measured range (the default) does not. Hidden spots only score.

Usage (from the repository root; ~4 min on one core)::

    python benchmarks/he_clip.py --out benchmarks/results/he_clip.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from base_choice import base_only
from run_benchmark import HERE, shared_slides  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phases", default="0,1,2,3")
    ap.add_argument("--out", default=str(HERE / "results" / "he_clip.md"))
    args = ap.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from napari_s2s.core.evaluation.benchmark import build_holdout, score, summarise
    from napari_s2s.core.methods.histology import HeGaussian

    phases = [int(p) for p in args.phases.split(",")]
    rows, acc = [], {}
    t0 = time.time()
    for slide in shared_slides():
        for phase in phases:
            task, truth, meta = build_holdout(slide, seed=0, phase=phase)
            cells = [meta["name"], str(phase)]
            for method in ("base", "he_gaussian"):
                if method == "he_gaussian" and task.histology is None:
                    cells += ["", ""]
                    continue
                for clip in (False, True):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        if method == "base":
                            pred = base_only(task, "stack", clip_histology=clip)[0]
                        else:
                            pred = HeGaussian(clip=clip).predict(task)
                    s = summarise(score(task, truth, pred, meta), 0)
                    acc.setdefault((method, clip), []).append((s["pcc_median"], s["rmse_median"]))
                cells += [f"{acc[(method, c)][-1][0]:.3f} / {acc[(method, c)][-1][1]:.3f}" for c in (False, True)]
            rows.append("| " + " | ".join(cells) + " |")
            print(rows[-1], flush=True)
    lines = [
        "# The H&E term's predictors clipped to their measured range, or not",
        "",
        f"Command: `python benchmarks/he_clip.py --phases {args.phases} --out {args.out}` ({time.time() - t0:.0f} s).",
        "Seed 0; hidden-spot median PCC / RMSE over genes; base = the engine's base predictor alone (stacked).",
        "",
        "| slide | coset | base, not clipped | base, clipped | he_gaussian, not clipped | he_gaussian, clipped |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "| method | tasks | mean PCC not clipped / clipped | mean RMSE not clipped / clipped | tasks with higher / lower PCC |",
        "|---|---:|---:|---:|---:|",
    ]
    for method in ("base", "he_gaussian"):
        a, b = np.asarray(acc[(method, False)]), np.asarray(acc[(method, True)])
        d = b[:, 0] - a[:, 0]
        lines.append(
            f"| {method} | {len(a)} | {a[:, 0].mean():.4f} / {b[:, 0].mean():.4f} | "
            f"{a[:, 1].mean():.4f} / {b[:, 1].mean():.4f} | {int((d > 0).sum())} / {int((d < 0).sum())} |"
        )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
