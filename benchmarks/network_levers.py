"""Levers of the networks' training, each against the default: paired tasks, the engine's blend rule.

Every configuration is trained once per task (slide x seed x gene count) by ``s2s_paired.py
--arrays DIR`` with the same step limit, so runs can share the CPU without changing their result.
This script reads those arrays and compares each configuration with the reference one *task by task*
(same slide, seed, genes and base predictor): the networks alone, and the engine's result (the blend
with the weight lowered by two standard errors, as :mod:`napari_s2s.core.s2s.blend` does). Only the
out-of-fold arrays choose a weight; the hidden spots only score.

Usage (from the repository root)::

    python benchmarks/s2s_paired.py --seed 0 --genes 30 --budget 1000 \\
        --config '{"max_steps": 2000, "lr_decay": "linear"}' --arrays ARRAYS/lrlin_g30 --out PAIRED/lrlin_s0.json
    python benchmarks/network_levers.py ARRAYS/default_g30 ARRAYS/lrlin_g30 ARRAYS/hechan_g30 \\
        --md benchmarks/results/network_levers.md

The first folder is the reference. Tasks are paired by file name. Two diagnoses of the reference,
never rules: ``--headroom`` (the best single blend weight chosen on the hidden spots) and
``--transfer`` (the networks' gain over the base one lattice level up, where the weight is chosen,
and at the dense level).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from blend_margin import medians, study  # noqa: E402

from napari_s2s.core.s2s.blend import weight_estimate

MARGIN = 2.0  # the engine's default blend_margin
RULE = f"margin {MARGIN:g}"


def paired(ref: dict[str, dict], new: dict[str, dict]) -> dict:
    """Differences (new - reference) over the tasks both have, for the networks alone and the blend."""
    common = sorted(set(ref) & set(new))
    out = {"tasks": common}
    for what in ("net", RULE):
        d = np.array([new[t][what][0] - ref[t][what][0] for t in common])
        e = np.array([new[t][what][1] - ref[t][what][1] for t in common])
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
        out[what] = {"pcc": float(d.mean()), "se": se, "up": int((d > 0.0005).sum()), "down": int((d < -0.0005).sum())}
        out[what]["rmse"] = float(e.mean())
        out[what]["per_task"] = d
    return out


GRID = np.linspace(0.0, 1.0, 21)


def headroom(path: Path, grid: np.ndarray = GRID) -> tuple[float, float]:
    """A diagnosis, never a rule: the fixed blend weight with the highest median hidden-spot PCC (on a
    0.05 grid) and that PCC, i.e. what the best possible single weight could reach with these networks."""
    z = np.load(path)
    t, b, n = z["hidden_truth"], z["hidden_base"], z["hidden_net"]
    scores = [medians(t, b + w * (n - b))[0] for w in grid]
    k = int(np.argmax(scores))
    return float(grid[k]), float(scores[k])


def _gene_pcc(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(G,) PCC of each gene over the rows (0 where either side is constant)."""
    t = truth - truth.mean(0)
    p = pred - pred.mean(0)
    den = np.sqrt((t * t).sum(0) * (p * p).sum(0))
    return np.where(den > 0, (t * p).sum(0) / np.where(den > 0, den, 1.0), 0.0)


def arrays_cli(script: str, description: str, argv: list[str] | None) -> tuple[argparse.Namespace, str]:
    """The command line of the offline studies of task arrays (``folders`` of ``.npz``, ``--md``), and
    the command to print in their report (scratch folders named ``ARRAYS/...``)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--md", type=Path)
    args = ap.parse_args(argv)
    parts = [f"ARRAYS/{f.name}" for f in args.folders] + ([f"--md {args.md}"] if args.md else [])
    return args, f"python benchmarks/{script} " + " ".join(parts)


def change_cells(d: np.ndarray) -> str:
    """``mean ± se | up / down`` of per-task changes (up / down: by more than 0.0005)."""
    se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0
    return f"{d.mean():+.4f} ± {se:.4f} | {int((d > 0.0005).sum())} / {int((d < -0.0005).sum())}"


def emit(lines: list[str], md: Path | None) -> int:
    """Print a report and write it to ``md`` when given."""
    text = "\n".join(lines) + "\n"
    print(text)
    if md:
        md.write_text(text)
    return 0


def transfer(path: Path) -> tuple[float, ...]:
    """A diagnosis: the networks' gain over the base one lattice level up (out-of-fold rows, what the
    weight is chosen on) and at the dense level (hidden spots), each the median over genes of the
    per-gene PCC difference; and the least-squares weight before the margin. With the arrays of
    ``s2s_paired.py --coarse`` also the gain two levels up (the networks applied one level sparser
    than they were trained), and the least-squares weight at each of the three levels (``nan``
    without them; the dense level's is a diagnosis, chosen on hidden spots)."""
    z = np.load(path)
    up = _gene_pcc(z["oof_truth"], z["oof_net"]) - _gene_pcc(z["oof_truth"], z["oof_base"])
    down = _gene_pcc(z["hidden_truth"], z["hidden_net"]) - _gene_pcc(z["hidden_truth"], z["hidden_base"])
    a, _ = weight_estimate(z["oof_truth"], z["oof_base"], z["oof_net"], z["oof_gw"], z["oof_spots"])
    gsel = z["oof_gsel"]
    t, b, n = z["hidden_truth"][:, gsel], z["hidden_base"][:, gsel], z["hidden_net"][:, gsel]
    a_dense, _ = weight_estimate(t, b, n, z["oof_gw"], np.arange(len(t)))
    coarse, a_coarse = float("nan"), float("nan")
    if "coarse_truth" in z.files:
        ct, cb, cn = z["coarse_truth"], z["coarse_base"], z["coarse_net"]
        coarse = float(np.median(_gene_pcc(ct, cn) - _gene_pcc(ct, cb)))
        a_coarse, _ = weight_estimate(ct, cb, cn, z["oof_gw"], z["coarse_spots"])
    return float(np.median(up)), float(np.median(down)), float(a), coarse, float(a_coarse), float(a_dense)


def report(
    names: list[str],
    recs: dict[str, dict[str, dict]],
    heads: dict[str, tuple] | None = None,
    gaps: dict[str, tuple] | None = None,
) -> str:
    ref = names[0]
    lines = ["# Network training levers against the default (paired tasks)", ""]
    lines.append(
        "Made by `python benchmarks/network_levers.py` (see its docstring). Reference: "
        f"`{ref}`. Per task: median over genes"
    )
    lines.append("of the hidden-spot PCC; *blend* is the engine's result (weight = least-squares weight on the")
    lines.append(f"out-of-fold predictions minus {MARGIN:g} standard errors). Differences are new - reference;")
    lines.append("± is the standard error over tasks; up / down: tasks above / below by more than 0.0005.")
    lines += [
        "",
        "| configuration | tasks | networks alone: PCC diff | blend: PCC diff | blend: up / down | blend: RMSE diff |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for n in names[1:]:
        p = paired(recs[ref], recs[n])
        net, bl = p["net"], p[RULE]
        lines.append(
            f"| `{n}` | {len(p['tasks'])} | {net['pcc']:+.4f} ± {net['se']:.4f} | {bl['pcc']:+.4f} ± {bl['se']:.4f} | "
            f"{bl['up']} / {bl['down']} | {bl['rmse']:+.4f} |"
        )
    for n in names[1:]:
        p = paired(recs[ref], recs[n])
        lines += ["", f"## `{n}` against `{ref}`", ""]
        lines.append("| task | base | networks: ref -> new | blend: ref -> new (weight) |")
        lines.append("|---|---:|---:|---:|")
        for t in p["tasks"]:
            a, b = recs[ref][t], recs[n][t]
            lines.append(
                f"| {t} | {a['base'][0]:.3f} | {a['net'][0]:.3f} -> {b['net'][0]:.3f} | "
                f"{a[RULE][0]:.3f} -> {b[RULE][0]:.3f} ({a[RULE][2]:.2f} -> {b[RULE][2]:.2f}) |"
            )
    if heads:
        gap = np.mean([heads[t][1] - recs[ref][t][RULE][0] for t in heads])
        lines += ["", f"## Headroom of the blend (`{ref}`)", ""]
        lines.append("The best single weight *chosen on the hidden spots* (a diagnosis of what any weight rule could")
        lines.append(f"reach with these networks, never a rule): mean gain over the engine's weight {gap:+.4f} PCC.")
        lines += ["", "| task | engine: weight, PCC | best weight, PCC |", "|---|---:|---:|"]
        for t, (w, sc) in heads.items():
            r = recs[ref][t][RULE]
            lines.append(f"| {t} | {r[2]:.2f}, {r[0]:.3f} | {w:.2f}, {sc:.3f} |")
    if gaps:
        loss = np.mean([g[1] - g[0] for g in gaps.values()])
        lines += ["", f"## The networks' gain one level up and at the dense level (`{ref}`)", ""]
        lines.append("Median over genes of the networks' PCC minus the base's: on the out-of-fold rows (measured")
        lines.append("spots predicted from each phase's kept spots, where the weight is chosen) and on the hidden")
        lines.append(f"spots (a diagnosis, never a rule). Mean change from one level to the other: {loss:+.4f}.")
        lines.append("Two levels up (`s2s_paired.py --coarse`): the same networks applied one level sparser than")
        lines.append("they were trained, each coset of the measured lattice a slide of its own; weights: least squares")
        lines.append("on each level's rows (two levels up / one level up / dense, the last on hidden spots).")
        lines += ["", "| task | gain two levels up | gain one level up | gain at the dense level | weights |"]
        lines.append("|---|---:|---:|---:|---:|")
        for t, (up, down, a, coarse, a_c, a_d) in gaps.items():
            lines.append(f"| {t} | {coarse:+.3f} | {up:+.3f} | {down:+.3f} | {a_c:.2f} / {a:.2f} / {a_d:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", help="folders of task arrays; the first is the reference")
    ap.add_argument("--md", help="Markdown report to write")
    ap.add_argument(
        "--headroom", action="store_true", help="add the best hidden-spot weight of the reference (diagnosis)"
    )
    ap.add_argument(
        "--transfer", action="store_true", help="add the networks' gain one level up and at the dense level"
    )
    a = ap.parse_args(argv)
    if len(a.dirs) < 2:
        ap.error("give the reference folder and at least one configuration to compare")
    names, recs = [], {}
    for d in a.dirs:
        files = sorted(Path(d).glob("*.npz"))
        if not files:
            ap.error(f"no task arrays (*.npz) in {d}")
        names.append(Path(d).name)
        recs[names[-1]] = {f.stem: study(f, margins=(MARGIN,)) for f in files}
    heads = None
    if a.headroom:
        heads = {f.stem: headroom(f) for f in sorted(Path(a.dirs[0]).glob("*.npz"))}
    gaps = None
    if a.transfer:
        gaps = {f.stem: transfer(f) for f in sorted(Path(a.dirs[0]).glob("*.npz"))}
    text = report(names, recs, heads, gaps)
    if a.md:
        Path(a.md).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
