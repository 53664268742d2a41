"""Is the networks' out-of-fold gain inflated by their own training targets next to the scored spot?

A diagnosis on the arrays of ``s2s_paired.py --arrays`` (default engine, random folds). Each
out-of-fold row is one measured spot ``s`` predicted by its own fold's network in one phase (keep-1/4
coset) where ``s`` is not kept. In that phase the same network was trained, on the very same input
image, to predict the non-kept lattice neighbours of ``s`` that belong to other folds: the row's
*leak* is how many there are. The dense level never offers that (no neighbour of a hidden spot is
ever a target), so a gain that grows with the leak is a gain the dense level will not see.

The leak is confounded with geometry (a spot with more non-kept neighbours is also farther from
the kept ones), so the effect is estimated *within* rows with the same number of non-kept
neighbours: there, which of them are in the spot's own fold is random (the folds are a random
partition). Per task: the row gain (base squared error minus the network's, genes weighted as the
blend weighs them, standardised units), its slope on the leak within equal geometry (± its standard
error, rows taken as independent), and the gain the fit gives at zero leak.

Usage (from the repository root)::

    python benchmarks/oof_leak.py ARRAYS/ckpt4k_g30 ARRAYS/ckpt4k_g8 --md benchmarks/results/oof_leak.md

The folds are rebuilt as the engine draws them (``assign_folds`` with the first numbers of the
seed's generator), so this holds for arrays of the default ``fold_layout="random"`` only.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
from run_benchmark import data_dir  # noqa: E402
from s2s_paired import SLIDES  # noqa: E402

NAME = re.compile(r"(?P<slide>.+)_s(?P<seed>\d+)_p(?P<phase>\d+)_g(?P<genes>\d+)\.npz$")


def leak_rows(task, seed: int, spots: np.ndarray, phases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per out-of-fold row: (non-kept lattice neighbours of the spot, those of them in other folds)."""
    from scipy.spatial import cKDTree

    from napari_s2s.core.data.lattice import physical
    from napari_s2s.core.methods.s2s import to_lattice
    from napari_s2s.core.s2s import sampling as S
    from napari_s2s.core.s2s.train import assign_folds

    lr, lc, _, _ = to_lattice(task)
    m = len(lr)
    folds = assign_folds(m, 4, np.random.default_rng(seed))
    img = S.lattice_image(lr, lc, np.zeros((m, 1), np.float32), task.kind, pad=0, min_shape=1)
    pix = np.stack([lr - img.origin[0], lc - img.origin[1]], axis=1)
    parity = int((lr[0] + lc[0]) % 2) if task.kind == "hex" else 0
    kept = [k for k in (S.keep_quarter_image(img, ph) for ph in S.phase_origins(task.kind, parity)) if k.sum() >= 2]
    phys = physical(lr, lc, task.kind)
    tree = cKDTree(phys)
    step = float(np.median(tree.query(phys, 2)[0][:, 1]))  # one lattice step
    nbrs = tree.query_ball_point(phys, step * 1.05)
    non_kept = np.zeros(len(spots), np.int64)
    leak = np.zeros(len(spots), np.int64)
    for i, (s, p) in enumerate(zip(spots, phases)):
        for j in nbrs[s]:
            if j != s and not kept[p][pix[j, 0], pix[j, 1]]:
                non_kept[i] += 1
                leak[i] += int(folds[j] != folds[s])
    return non_kept, leak


def within_geometry(gain: np.ndarray, non_kept: np.ndarray, leak: np.ndarray) -> tuple[float, float, float]:
    """Slope of ``gain`` on ``leak`` with one intercept per geometry (non-kept neighbours), its
    standard error, and the mean intercept (the gain at zero leak)."""
    levels = np.unique(non_kept)
    x = np.column_stack([(non_kept == v).astype(float) for v in levels] + [leak.astype(float)])
    coef = np.linalg.lstsq(x, gain, rcond=None)[0]
    res = gain - x @ coef
    centred = leak - np.array([leak[non_kept == v].mean() for v in non_kept])
    df = max(len(gain) - x.shape[1], 1)
    se = float(np.sqrt((res @ res) / df / max(float(centred @ centred), 1e-12)))
    return float(coef[-1]), se, float(coef[:-1].mean())


def study(folder: Path) -> list[dict]:
    from napari_s2s.core.data.io import read_slide
    from napari_s2s.core.evaluation.benchmark import build_holdout

    files = {Path(f).name.removesuffix(".h5ad"): f for f in SLIDES}
    rows = []
    for path in sorted(folder.glob("*.npz")):
        got = NAME.match(path.name)
        if got is None or got["slide"] not in files:
            continue
        z = np.load(path)
        seed, phase, n_genes = int(got["seed"]), int(got["phase"]), int(got["genes"])
        task = build_holdout(read_slide(data_dir() / files[got["slide"]]), n_genes=n_genes, seed=seed, phase=phase)[0]
        non_kept, leak = leak_rows(task, seed, z["oof_spots"], z["oof_phases"])
        t, b, n, gw = z["oof_truth"], z["oof_base"], z["oof_net"], z["oof_gw"]
        gain = (((t - b) ** 2 - (t - n) ** 2) * gw).sum(axis=1) / gw.sum()
        slope, se, zero = within_geometry(gain, non_kept, leak)
        rows.append(
            {
                "task": path.stem,
                "alpha": float(z["alpha"]),
                "rows": len(gain),
                "gain": float(gain.mean()),
                "slope": slope,
                "se": se,
                "zero": zero,
            }
        )
        print(rows[-1], flush=True)
    return rows


def report(folders: list[Path], results: list[list[dict]]) -> str:
    lines = ["# Out-of-fold gain against the leak (a diagnosis)", ""]
    lines.append(
        "Made by `python benchmarks/oof_leak.py " + " ".join(f"ARRAYS/{f.name}" for f in folders) + "` (see its"
    )
    lines.append("docstring; the arrays come from `s2s_paired.py --arrays`, 4000 steps, default engine). Gain: base")
    lines.append("squared error minus the network's per out-of-fold row (standardised units, > 0: the network is")
    lines.append("better); slope: its change per leaked neighbour (a non-kept neighbour that was the network's own")
    lines.append("training target in that phase) among rows of the same geometry; last column: the fitted gain with")
    lines.append("no leaked neighbour.")
    for folder, rows in zip(folders, results):
        lines += ["", f"## `{folder.name}`", ""]
        lines.append("| task | weight | rows | mean gain | slope per leaked neighbour | gain at zero leak |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        for r in rows:
            lines.append(
                f"| {r['task']} | {r['alpha']:.2f} | {r['rows']} | {r['gain']:+.3f} | "
                f"{r['slope']:+.3f} ± {r['se']:.3f} | {r['zero']:+.3f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", help="folders of task arrays (s2s_paired.py --arrays)")
    ap.add_argument("--md", help="Markdown report to write")
    a = ap.parse_args(argv)
    folders = [Path(d) for d in a.dirs]
    text = report(folders, [study(f) for f in folders])
    if a.md:
        Path(a.md).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
