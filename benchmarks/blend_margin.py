"""How much weight the networks should get: the blend weight's margin, studied on stored arrays.

The engine blends ``base + alpha * (networks - base)``; ``alpha`` is the least-squares weight on the
networks' out-of-fold predictions one lattice level up, lowered by ``blend_margin`` standard errors
(cluster-robust over spots: :func:`napari_s2s.core.s2s.blend.weight_estimate`). This script applies
several margins to the SAME trained networks, from the arrays that ``s2s_paired.py --arrays`` stores
per task (the out-of-fold arrays the engine weighs, and the base's and the networks' predictions at the
hidden spots). Only the out-of-fold arrays choose a weight; the hidden spots only score.

Usage (from the repository root)::

    # one training run per slide, seed and gene count (step-limited, so several can share the CPU)
    python benchmarks/s2s_paired.py --seed 0 --genes 30 --budget 1000 --config '{"max_steps": 2000}' \\
        --arrays ARRAYS/default_g30 --out PAIRED/default_g30_s0.json
    python benchmarks/blend_margin.py ARRAYS/default_g30 ARRAYS/default_g8 \\
        --md benchmarks/results/blend_margin.md --json benchmarks/results/blend_margin.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from napari_s2s.core.evaluation.metrics import pcc, rmse
from napari_s2s.core.s2s.blend import weight_estimate

MARGINS = (0.0, 1.0, 2.0, 3.0)


def medians(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """Median over genes of the PCC and the RMSE at the hidden spots."""
    ps = [pcc(truth[:, g], pred[:, g]) for g in range(truth.shape[1])]
    es = [rmse(truth[:, g], pred[:, g]) for g in range(truth.shape[1])]
    return float(np.median([p for p in ps if p is not None])), float(np.median(es))


def study(path: Path, margins=MARGINS) -> dict:
    """One task: the least-squares weight, its error, and the hidden-spot scores per margin."""
    z = np.load(path)
    a, se = weight_estimate(z["oof_truth"], z["oof_base"], z["oof_net"], z["oof_gw"], z["oof_spots"])
    t, b, n = z["hidden_truth"], z["hidden_base"], z["hidden_net"]
    rec = {"task": path.stem, "weight_ls": a, "se": se, "spots": int(len(np.unique(z["oof_spots"])))}
    rec["base"] = medians(t, b)
    rec["net"] = medians(t, n)
    for m in margins:
        w = float(np.clip(a - m * se, 0.0, 1.0))
        rec[f"margin {m:g}"] = (*medians(t, b + w * (n - b)), w)
    return rec


def table(groups: dict[str, list[dict]], margins=MARGINS) -> str:
    cols = ["net"] + [f"margin {m:g}" for m in margins]
    lines = ["# The blend weight's margin (same trained networks, several weights)", ""]
    lines.append("Made by `python benchmarks/blend_margin.py` (see its docstring). PCC / RMSE: medians over genes")
    lines.append("on the hidden spots. `margin m`: weight = least-squares weight - m standard errors, in [0, 1]")
    lines.append("(the engine's default is 2; 0 is the rule before 2026-11-30). Below base: PCC more than 0.002")
    lines.append("under the base predictor alone.")
    for name, recs in groups.items():
        lines += ["", f"## `{name}` ({len(recs)} tasks)", ""]
        lines.append("| rule | mean PCC | mean RMSE | PCC - base | below base | worst | mean weight |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        bp = np.array([r["base"][0] for r in recs])
        lines.append(f"| base alone | {bp.mean():.4f} | {np.mean([r['base'][1] for r in recs]):.4f} | | | | 0 |")
        for c in cols:
            p = np.array([r[c][0] for r in recs])
            e = np.array([r[c][1] for r in recs])
            w = np.mean([r[c][2] for r in recs]) if c != "net" else 1.0
            d = p - bp
            lines.append(
                f"| {c} | {p.mean():.4f} | {e.mean():.4f} | {d.mean():+.4f} | {int((d < -0.002).sum())} | "
                f"{d.min():+.3f} | {w:.2f} |"
            )
        lines += ["", "| task | spots | weight (ls ± se) | base | net | " + " | ".join(cols[1:]) + " |"]
        lines.append("|---|---:|---:|---:|---:|" + "---:|" * (len(cols) - 1))
        for r in recs:
            cells = [f"{r[c][0]:.3f} (w {r[c][2]:.2f})" for c in cols[1:]]
            lines.append(
                f"| {r['task']} | {r['spots']} | {r['weight_ls']:.2f} ± {r['se']:.2f} | {r['base'][0]:.3f} | "
                f"{r['net'][0]:.3f} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", help="folders of task arrays (s2s_paired.py --arrays), one per configuration")
    ap.add_argument("--md", help="Markdown table to write")
    ap.add_argument("--json", help="per-task records to write")
    a = ap.parse_args(argv)
    groups = {Path(d).name: [study(f) for f in sorted(Path(d).glob("*.npz"))] for d in a.dirs}
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        ap.error("no task arrays (*.npz) in the folders given")
    text = table(groups)
    if a.md:
        Path(a.md).write_text(text)
    if a.json:
        Path(a.json).write_text(json.dumps(groups, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
