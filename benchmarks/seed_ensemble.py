"""What an ensemble of two training seeds would add: the networks of seeds 0 and 1 averaged, offline.

Reads the arrays of ``s2s_paired.py --arrays DIR`` (one ``.npz`` per slide, seed, coset and gene
count: the hidden spots' truth, base and network predictions, and the blend weight) and, for every
task run with both seeds, compares on the hidden spots (median over genes of the per-gene PCC):

* the networks alone: each seed's (mean of the two) against the average of the two seeds' networks;
* the blend: each seed's own blend (mean of the two) against the base plus the mean of the two
  weights times the averaged networks' departure from the base.

Two seeds cost twice the training time, so this is an upper bound on what a seed ensemble trained
in the same budget could add. A diagnosis on scratch arrays (their commands are in
``checkpoint_split.md``), not a rule; nothing here is chosen on the hidden spots.

Usage (from the repository root)::

    python benchmarks/seed_ensemble.py ARRAYS/ckpt_g30 ARRAYS/ckpt_g8 --md benchmarks/results/seed_ensemble.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from network_levers import _gene_pcc, arrays_cli, change_cells, emit  # noqa: E402


def _median_pcc(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(np.median(_gene_pcc(truth, pred)))


def pairs(folder: Path) -> list[tuple[str, Path, Path]]:
    """(task name without the seed, seed-0 file, seed-1 file) for tasks run with both seeds."""
    out = []
    for p0 in sorted(folder.glob("*_s0_*.npz")):
        p1 = p0.with_name(p0.name.replace("_s0_", "_s1_"))
        if p1.exists():
            out.append((p0.stem.replace("_s0_", "_"), p0, p1))
    return out


def compare(p0: Path, p1: Path) -> dict:
    a, b = np.load(p0), np.load(p1)
    truth = a["hidden_truth"]
    if not np.allclose(truth, b["hidden_truth"]):
        raise ValueError(f"{p0.name} and {p1.name} do not hold the same hidden spots")
    nets = 0.5 * (a["hidden_net"] + b["hidden_net"])
    base = 0.5 * (a["hidden_base"] + b["hidden_base"])
    alpha = 0.5 * (float(a["alpha"]) + float(b["alpha"]))
    own = [
        _median_pcc(truth, z["hidden_base"] + float(z["alpha"]) * (z["hidden_net"] - z["hidden_base"])) for z in (a, b)
    ]
    return {
        "base": _median_pcc(truth, base),
        "nets_one": float(np.mean([_median_pcc(truth, z["hidden_net"]) for z in (a, b)])),
        "nets_two": _median_pcc(truth, nets),
        "blend_one": float(np.mean(own)),
        "blend_two": _median_pcc(truth, base + alpha * (nets - base)),
        "alpha": alpha,
    }


def main(argv: list[str] | None = None) -> int:
    args, cmd = arrays_cli("seed_ensemble.py", __doc__.splitlines()[0], argv)
    lines = [
        "# Two training seeds averaged (an offline upper bound on a seed ensemble)",
        "",
        f"Command: `{cmd}` (`ARRAYS`: the scratch arrays of `checkpoint_split.md`'s reference runs, "
        "`--config '{\"max_steps\": 4000}'`, seeds 0 and 1). Hidden-spot median PCC over genes.",
        "",
        "| task | base | networks: one seed -> two | blend: one seed -> two (weight) |",
        "|---|---:|---:|---:|",
    ]
    summary = []
    for folder in args.folders:
        rows = []
        for name, p0, p1 in pairs(folder):
            r = compare(p0, p1)
            rows.append(r)
            lines.append(
                f"| {name} | {r['base']:.3f} | {r['nets_one']:.3f} -> {r['nets_two']:.3f} | "
                f"{r['blend_one']:.3f} -> {r['blend_two']:.3f} ({r['alpha']:.2f}) |"
            )
        if rows:
            dn = np.array([r["nets_two"] - r["nets_one"] for r in rows])
            db = np.array([r["blend_two"] - r["blend_one"] for r in rows])
            summary.append(f"| `{folder.name}` | {len(rows)} | {dn.mean():+.4f} | {change_cells(db)} |")
    lines += [
        "",
        "| arrays | tasks | networks alone: two seeds - one | blend: two seeds - one (± se) | blend up / down |",
        "|---|---:|---:|---:|---:|",
        *summary,
    ]
    return emit(lines, args.md)


if __name__ == "__main__":
    sys.exit(main())
