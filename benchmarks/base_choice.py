"""What the base predictor picks on each shared slide, and how well it alone predicts the hidden spots.

The base predictor (``napari_s2s.core.smoothing.base``) chooses among kriging with or without PCA
denoising and an H&E term by K-fold cross-validation over the measured spots. This script compares
the selection rules, on every shared slide and seed, with the hold-out protocol of
``run_s2s.py`` (the hidden spots only score, they never choose):

* ``stack`` (the default): convex weights over all candidates, fitted on their cross-validated
  predictions;
* ``one-se``: the simplest candidate within one standard error of the lowest error;
* ``lowest``: the lowest cross-validated error.

Usage (from the repository root)::

    nice -n 5 python benchmarks/base_choice.py --seeds 0,1,2
    # the four measured cosets of each slide (phase 0 is the benchmark's), seed 0
    python benchmarks/base_choice.py --seeds 0 --phases 0,1,2,3 --out benchmarks/results/base_choice_phases.md

Writes ``benchmarks/results/base_choice.md``: per slide and seed, each rule's choice and the hidden
spots' median PCC / RMSE of the base alone (no network is trained).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from run_benchmark import HERE, shared_slides  # noqa: E402  (one place says where the slides are)

RULES = ("stack", "one-se", "lowest")


def base_only(task, rule: str, **options):
    """(prediction, chosen candidate) of the base predictor alone under a selection rule (and other
    :class:`~napari_s2s.core.smoothing.base.BasePredictor` ``options``)."""
    from napari_s2s.core.methods.s2s import S2SMethod
    from napari_s2s.core.s2s import engine
    from napari_s2s.core.smoothing.base import BasePredictor

    saved = engine.BasePredictor
    engine.BasePredictor = functools.partial(BasePredictor, selection=rule, **options)  # the engine's base, one rule
    try:
        m = S2SMethod(blend="base", max_steps=1, budget_s=None)
        pred = m.predict(task)
    finally:
        engine.BasePredictor = saved
    return pred, m.details_["base"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--phases", default="0", help="measured cosets (build_holdout phase), e.g. 0,1,2,3")
    ap.add_argument("--rules", default=",".join(RULES), help=f"selection rules, of {', '.join(RULES)}")
    ap.add_argument(
        "--gene-ranks", default=None, help="A:B: each slide's genes ranked A to B (run_s2s.py --gene-ranks)"
    )
    ap.add_argument("--out", default=str(HERE / "results" / "base_choice.md"))
    args = ap.parse_args(argv)
    rules = args.rules.split(",")
    if not rules or any(r not in RULES for r in rules):
        ap.error(f"--rules: choose from {', '.join(RULES)}")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from run_s2s import ranked_genes

    from napari_s2s.core.evaluation.benchmark import build_holdout, score, summarise

    seeds = [int(s) for s in args.seeds.split(",")]
    phases = [int(p) for p in args.phases.split(",")]
    rows, means, wins = [], {r: [] for r in rules}, {r: 0 for r in rules}
    t0 = time.time()
    for slide in shared_slides():
        for seed, phase in [(sd, ph) for sd in seeds for ph in phases]:
            genes = ranked_genes(slide, args.gene_ranks, phase) if args.gene_ranks else None
            task, truth, meta = build_holdout(slide, genes=genes, seed=seed, phase=phase)
            cells = [meta["name"], f"{seed}, phase {phase}" if phase else str(seed)]
            for rule in rules:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pred, choice = base_only(task, rule)
                s = summarise(score(task, truth, pred, meta), 0)
                means[rule].append((s["pcc_median"], s["rmse_median"]))
                cells += [choice, f"{s['pcc_median']:.3f}", f"{s['rmse_median']:.3f}"]
            first = means[rules[0]][-1][0]
            for rule in rules[1:]:
                wins[rule] += first >= means[rule][-1][0]
            rows.append("| " + " | ".join(cells) + " |")
            print(rows[-1], flush=True)
    lines = [
        "# The base predictor alone: what each selection rule picks, hidden-spot scores",
        "",
        f"Command: `python benchmarks/base_choice.py --seeds {args.seeds} --phases {args.phases} "
        f"--rules {','.join(rules)}"
        + (f" --gene-ranks {args.gene_ranks}" if args.gene_ranks else "")
        + f" --out {args.out}` ({time.time() - t0:.0f} s).",
        "Base alone (no network), hold-out protocol of `run_s2s.py`; median over genes per slide.",
        "",
        "| slide | seed | " + " | ".join(f"{r}: choice | PCC | RMSE" for r in rules) + " |",
        "|---|---:|" + "---|---:|---:|" * len(rules),
        *rows,
        "",
        f"| rule | mean PCC | mean RMSE | tasks where `{rules[0]}` has the higher or equal PCC |",
        "|---|---:|---:|---:|",
    ]
    for rule in rules:
        v = np.asarray(means[rule])
        won = "" if rule == rules[0] else f"{wins[rule]} / {len(rows)}"
        lines.append(f"| {rule} | {v[:, 0].mean():.3f} | {v[:, 1].mean():.3f} | {won} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
