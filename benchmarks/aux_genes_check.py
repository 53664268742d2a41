"""Why auxiliary training genes hurt with few genes: the base alone, the networks alone and the blend
on the hidden spots, with the blend weight and the out-of-fold errors it came from (HER2ST B4, the 8 most
variable genes, seed 0), with and without 30 auxiliary genes.

Usage (from the repository root)::

    python benchmarks/aux_genes_check.py --budget 30 > benchmarks/results/aux_genes_check.txt
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from run_benchmark import data_dir  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=30.0)
    ap.add_argument("--slide", default="her2st_B4.h5ad")
    ap.add_argument("--genes", type=int, default=8)
    a = ap.parse_args(argv)
    from napari_s2s.core.data.histology_features import feature_function, histology_available
    from napari_s2s.core.data.io import read_slide
    from napari_s2s.core.evaluation.benchmark import build_holdout, score, summarise
    from napari_s2s.core.methods.s2s import S2SMethod, to_lattice
    from napari_s2s.core.s2s.engine import S2SImputer, cross_gene_matrix

    task, truth, meta = build_holdout(read_slide(data_dir() / a.slide), seed=0, budget_s=a.budget, n_genes=a.genes)
    lr, lc, tr, tc = to_lattice(task)
    offset = (int(task.measured_rows[0] - 2 * lr[0]), int(task.measured_cols[0] - 2 * lc[0]))
    feats = None
    if histology_available(task.histology, kind=task.kind):
        feats = feature_function(task.histology, task.kind, scale=1.0, offset=offset)
    values = np.asarray(task.measured_values, np.float32)
    allg = cross_gene_matrix(task.measured_all_genes)
    print(f"{a.slide}, {a.genes} genes, seed 0, budget {a.budget:g} s; median PCC over genes on the hidden spots")
    for aux in (30, 0):
        imp = S2SImputer(S2SMethod(aux_genes=aux).config_for(task))
        for _ in imp.fit_arrays_iter(lr, lc, task.kind, values, list(task.genes), all_genes=allg, features=feats):
            pass
        args = (lr, lc, task.kind, values, tr, tc, allg, None, feats)
        pcc = {}
        for label, alpha in (("base", 0.0), ("networks", 1.0), ("blend", None)):
            pcc[label] = summarise(score(task, truth, imp.predict_arrays(*args, alpha=alpha), meta), 0)["pcc_median"]
        o = imp.stats["oof"]
        print(
            f"aux_genes {aux:2d}: base {pcc['base']:.3f}  networks {pcc['networks']:.3f}  blend {pcc['blend']:.3f}"
            f"  | weight {imp.alpha:.2f}, out-of-fold error base {o['base']:.4f} networks {o['network']:.4f}"
            f" ({100 * (1 - o['network'] / o['base']):.1f} % lower), {imp.stats['steps']} steps"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
