"""A diagnosis: does the networks' transfer gap follow each gene's spatial scale?

For every task of ``s2s_paired.py --arrays DIR`` (30 genes, measured coset 0), per gene:

* the *gap*: the networks' PCC gain over the base one lattice level up (out-of-fold rows, where the
  blend weight is fitted) minus their gain at the dense level (hidden spots; a diagnosis, never a
  rule);
* the gene's *scale* on the measured spots only: the correlation of its values between measured
  neighbours two measured pitches apart divided by that between nearest measured neighbours (near
  1: a broad pattern; near 0 or below: a pattern about as fine as the measured lattice).

Prints, per slide and pooled, the Spearman correlation between gap and scale over genes, and the mean
gap of the finer and the broader half of the genes.

Usage (from the repository root; the arrays are those of ``checkpoint_split.md``'s reference runs)::

    python benchmarks/gap_by_scale.py ARRAYS/ckpt_g30 --md benchmarks/results/gap_by_scale.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from network_levers import _gene_pcc  # noqa: E402
from run_benchmark import data_dir  # noqa: E402
from s2s_paired import SLIDES  # noqa: E402
from scipy.spatial import cKDTree
from scipy.stats import spearmanr


def neighbour_corr(pos: np.ndarray, values: np.ndarray, dist: float, tol: float = 0.25) -> np.ndarray:
    """(G,) correlation of each gene between spot pairs ``dist`` apart (within ``tol`` of it)."""
    pairs = cKDTree(pos).query_pairs(dist * (1 + tol), output_type="ndarray")
    d = np.linalg.norm(pos[pairs[:, 0]] - pos[pairs[:, 1]], axis=1)
    pairs = pairs[d >= dist * (1 - tol)]
    a = np.concatenate([values[pairs[:, 0]], values[pairs[:, 1]]])
    b = np.concatenate([values[pairs[:, 1]], values[pairs[:, 0]]])
    return _gene_pcc(a, b)


def gene_scale(task) -> np.ndarray:
    """(G,) the scale index of each gene of ``task`` from its measured spots only."""
    from napari_s2s.core.data.lattice import physical

    pos = physical(task.measured_rows, task.measured_cols, task.kind)
    step = float(np.median(cKDTree(pos).query(pos, k=2)[0][:, 1]))  # nearest measured neighbour
    v = np.asarray(task.measured_values, float)
    c1 = neighbour_corr(pos, v, step)
    c2 = neighbour_corr(pos, v, 2 * step)
    return np.where(c1 > 1e-6, c2 / np.where(c1 > 1e-6, c1, 1.0), 0.0)


def main(argv: list[str] | None = None) -> int:
    from napari_s2s.core.data.io import read_slide
    from napari_s2s.core.evaluation.benchmark import build_holdout

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arrays", help="folder of s2s_paired.py --arrays (30 genes, phase 0)")
    ap.add_argument("--md", help="Markdown table to write")
    a = ap.parse_args(argv)
    rows, pooled = [], []
    for fname in SLIDES:
        slide = read_slide(data_dir() / fname)
        task, truth, meta = build_holdout(slide, n_genes=30, seed=0, phase=0)
        files = sorted(Path(a.arrays).glob(f"{meta['name']}_s*_p0_g30.npz"))
        if not files:
            continue
        scale = gene_scale(task)
        for f in files:
            z = np.load(f)
            assert np.allclose(z["hidden_truth"], truth), f"{f.name}: not this slide's hold-out task"
            g = z["oof_gsel"]
            up = _gene_pcc(z["oof_truth"], z["oof_net"]) - _gene_pcc(z["oof_truth"], z["oof_base"])
            t, b, n = z["hidden_truth"][:, g], z["hidden_base"][:, g], z["hidden_net"][:, g]
            gap = up - (_gene_pcc(t, n) - _gene_pcc(t, b))
            s = scale[g]
            rho = spearmanr(s, gap).statistic
            fine = s <= np.median(s)
            rows.append((f.stem, rho, gap[fine].mean(), gap[~fine].mean(), float(np.median(s))))
            pooled.append((s - np.median(s), gap))
    s = np.concatenate([p[0] for p in pooled])
    gap = np.concatenate([p[1] for p in pooled])
    lines = [
        "| task | Spearman (scale, gap) | mean gap, finer half | mean gap, broader half | median scale |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {r[0]} | {r[1]:+.2f} | {r[2]:+.3f} | {r[3]:+.3f} | {r[4]:.2f} |" for r in rows]
    fine = s <= 0
    lines.append(
        f"| pooled ({len(gap)} genes; scale centred per task) | {spearmanr(s, gap).statistic:+.2f} | "
        f"{gap[fine].mean():+.3f} | {gap[~fine].mean():+.3f} | |"
    )
    text = "\n".join(lines) + "\n"
    print(text)
    if a.md:
        Path(a.md).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
