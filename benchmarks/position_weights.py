"""A blend weight per kind of dense position (square lattices), fitted one level up, offline.

On a square lattice the hidden dense positions are of two kinds: *edge* positions (odd row or odd
column: one pitch from two measured spots) and *centre* positions (both odd: sqrt(2) pitches from
four). One lattice level up, where the engine fits the blend weight on out-of-fold predictions, the
measured spots that a phase does not keep fall into the same two kinds relative to that phase's kept
sub-lattice. This script fits one weight per kind there (the engine's rule: least squares, each gene
divided by its variance, minus 2 standard errors clustered by spot, clipped to [0, 1]) and applies
each to its kind of hidden position, against the engine's single weight. It also prints the
least-squares weight per kind on the hidden spots themselves (a diagnosis, never a rule).

Reads the arrays of ``s2s_paired.py --arrays DIR`` for the three square-lattice slides (HER2ST B4
and C2, breast layer 2; coset 0) and rebuilds each task's positions from the slide.

Usage (from the repository root; the arrays are those of ``checkpoint_split.md``'s reference runs)::

    python benchmarks/position_weights.py ARRAYS/ckpt_g30 ARRAYS/ckpt_g8 --md benchmarks/results/position_weights.md
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
from network_levers import _gene_pcc, arrays_cli, change_cells, emit  # noqa: E402
from run_benchmark import shared_slides  # noqa: E402

SQUARE = ("her2st_B4", "her2st_C2", "st_breast_cancer_layer2")


def rows_of(folder: Path, slides: dict) -> list[str]:
    from napari_s2s.core.evaluation.benchmark import build_holdout
    from napari_s2s.core.methods.s2s import to_lattice
    from napari_s2s.core.s2s import sampling as S
    from napari_s2s.core.s2s.blend import blend_weight, weight_estimate

    out = []
    for path in sorted(folder.glob("*_p0_g*.npz")):
        m = re.match(r"(.+)_s(\d+)_p0_g(\d+)$", path.stem)
        if not m or m.group(1) not in slides:
            continue
        name, seed, n_genes = m.group(1), int(m.group(2)), int(m.group(3))
        z = np.load(path)
        task, truth, _ = build_holdout(slides[name], n_genes=n_genes, seed=seed, phase=0)
        if not np.allclose(np.asarray(truth, float), z["hidden_truth"]):
            raise ValueError(f"{path.name}: the hidden spots differ from the slide's task")
        lr, lc, tr, tc = to_lattice(task)
        origins = S.phase_origins("square")
        spots, phases = z["oof_spots"], z["oof_phases"]
        r0 = np.array([origins[q][0] for q in phases])
        c0 = np.array([origins[q][1] for q in phases])
        oof_centre = ((lr[spots] - r0) % 2 + (lc[spots] - c0) % 2) == 2
        hid_centre = (tr % 2 + tc % 2) == 2
        hb, hn, ht = z["hidden_base"], z["hidden_net"], z["hidden_truth"]
        single = float(z["alpha"])
        per, pred = {}, hb.copy()
        for centre in (False, True):
            o, h = oof_centre == centre, hid_centre == centre
            per[centre] = blend_weight(
                z["oof_truth"][o], z["oof_base"][o], z["oof_net"][o], z["oof_gw"], spots[o], margin=2.0
            )
            pred[h] = hb[h] + per[centre] * (hn[h] - hb[h])
        ref = float(np.median(_gene_pcc(ht, hb + single * (hn - hb))))
        new = float(np.median(_gene_pcc(ht, pred)))
        hidden_ls = [
            weight_estimate(ht[hid_centre == c], hb[hid_centre == c], hn[hid_centre == c], np.ones(ht.shape[1]))[0]
            for c in (False, True)
        ]
        out.append(
            (
                new - ref,
                f"| {path.stem} | {single:.2f} / {ref:.3f} | {per[False]:.2f}, {per[True]:.2f} / {new:.3f} | "
                f"{new - ref:+.4f} | {hidden_ls[0]:.2f}, {hidden_ls[1]:.2f} |",
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    args, cmd = arrays_cli("position_weights.py", __doc__.splitlines()[0], argv)
    slides = {s.name: s for s in shared_slides(list(SQUARE)) if s.name in SQUARE}
    lines = [
        "# A blend weight per kind of dense position (square lattices), fitted one level up",
        "",
        f"Command: `{cmd}` (`ARRAYS`: the scratch arrays of `checkpoint_split.md`'s reference runs). "
        "Hidden-spot median PCC over genes; weights edge, centre.",
        "",
        "| task | single weight / PCC | per kind: weights / PCC | change | hidden-spot least squares: edge, centre (diagnosis) |",
        "|---|---:|---:|---:|---:|",
    ]
    summary = []
    for folder in args.folders:
        rows = rows_of(folder, slides)
        lines += [r for _, r in rows]
        d = np.array([x for x, _ in rows])
        if len(d):
            summary.append(f"| `{folder.name}` | {len(d)} | {change_cells(d)} |")
    lines += ["", "| arrays | tasks | change of the median PCC (± se) | up / down |", "|---|---:|---:|---:|", *summary]
    return emit(lines, args.md)


if __name__ == "__main__":
    sys.exit(main())
