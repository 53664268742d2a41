"""Blend weights judged off the networks' training scale (same trained networks, several rules).

The networks learn sparser -> sparse one lattice level up and are applied one level finer, at the
dense grid; their out-of-fold gain where they were trained overstates their gain at the dense
level on every task of ``network_levers.md`` (the transfer gap). ``s2s_paired.py --coarse``
also scores them one level *sparser* than they were trained (each coset of the measured lattice a
slide of its own, the base conditioned on the same kept spots): off their scale by the same factor
two, in the other direction, and with measured truth. This script compares, task by task, blend
weights chosen on those rows with the engine's rule (least squares on the one-level-up rows minus
two standard errors). Only measured spots choose a weight; the hidden spots only score.

Usage (from the repository root; ARRAYS made by ``s2s_paired.py --arrays ARRAYS/NAME --coarse``)::

    python benchmarks/scale_weight.py ARRAYS/ref_g8 ARRAYS/ref_g30 --md benchmarks/results/scale_weight.md

Rules (each clipped to [0, 1]):

* ``engine``: the least-squares weight on the one-level-up rows minus 2 standard errors (clustered
  by spot);
* ``sparser``: the same on the two-levels-up rows;
* ``lower``: the lower of the two (the networks must help at their own scale *and* off it);
* ``pooled``: least squares on both sets of rows together, minus 2 standard errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from blend_margin import medians  # noqa: E402

from napari_s2s.core.s2s.blend import lower_bound, weight_estimate

MARGIN = 2.0
RULES = ("engine", "sparser", "lower", "pooled")


def weights(z) -> dict[str, float]:
    """The blend weight of each rule from one task's arrays."""
    gw = z["oof_gw"]
    up = lower_bound(*weight_estimate(z["oof_truth"], z["oof_base"], z["oof_net"], gw, z["oof_spots"]), MARGIN)
    ct, cb, cn, cs = z["coarse_truth"], z["coarse_base"], z["coarse_net"], z["coarse_spots"]
    sparser = lower_bound(*weight_estimate(ct, cb, cn, gw, cs), MARGIN)
    cat = np.concatenate
    spots = cat([z["oof_spots"], cs])
    pooled = weight_estimate(cat([z["oof_truth"], ct]), cat([z["oof_base"], cb]), cat([z["oof_net"], cn]), gw, spots)
    return {"engine": up, "sparser": sparser, "lower": min(up, sparser), "pooled": lower_bound(*pooled, MARGIN)}


def study(path: Path) -> dict | None:
    """Hidden-spot medians (PCC, RMSE) and the weight of every rule, or ``None`` without coarse rows."""
    z = np.load(path)
    if "coarse_truth" not in z.files:
        return None
    t, b, n = z["hidden_truth"], z["hidden_base"], z["hidden_net"]
    rec = {"base": (*medians(t, b), 0.0), "net": (*medians(t, n), 1.0)}
    for rule, w in weights(z).items():
        rec[rule] = (*medians(t, b + w * (n - b)), w)
    return rec


def report(recs: dict[str, dict]) -> str:
    tasks = sorted(recs)
    lines = ["# Blend weights judged one level sparser than the networks were trained", ""]
    lines.append("Made by `python benchmarks/scale_weight.py` (see its docstring): the same trained networks per")
    lines.append("task, one weight per rule; PCC / RMSE are medians over genes at the hidden spots. Differences")
    lines.append("against `engine`, ± the standard error over tasks; up / down: by more than 0.0005.")
    lines += ["", "| rule | tasks | PCC | PCC - engine | up / down | RMSE - engine | mean weight |"]
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    ref = np.array([recs[t]["engine"][0] for t in tasks])
    ref_e = np.array([recs[t]["engine"][1] for t in tasks])
    for rule in ("base",) + RULES:
        p = np.array([recs[t][rule][0] for t in tasks])
        e = np.array([recs[t][rule][1] for t in tasks])
        w = np.mean([recs[t][rule][2] for t in tasks])
        d = p - ref
        se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
        lines.append(
            f"| `{rule}` | {len(tasks)} | {p.mean():.4f} | {d.mean():+.4f} ± {se:.4f} | "
            f"{int((d > 0.0005).sum())} / {int((d < -0.0005).sum())} | {(e - ref_e).mean():+.4f} | {w:.2f} |"
        )
    lines += ["", "| task | base | networks | " + " | ".join(f"`{r}` (weight)" for r in RULES) + " |"]
    lines.append("|---|---:|---:|" + "---:|" * len(RULES))
    for t in tasks:
        r = recs[t]
        cells = " | ".join(f"{r[k][0]:.3f} ({r[k][2]:.2f})" for k in RULES)
        lines.append(f"| {t} | {r['base'][0]:.3f} | {r['net'][0]:.3f} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", help="folders of task arrays made with s2s_paired.py --arrays ... --coarse")
    ap.add_argument("--md", help="Markdown report to write")
    a = ap.parse_args(argv)
    recs = {}
    for d in a.dirs:
        for f in sorted(Path(d).glob("*.npz")):
            r = study(f)
            if r is not None:
                recs[f.stem] = r
    if not recs:
        ap.error("no task arrays with coarse rows (make them with s2s_paired.py --coarse)")
    text = report(recs)
    if a.md:
        Path(a.md).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
