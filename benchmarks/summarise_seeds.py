"""Summarise hold-out benchmark runs that differ only by their seed (run_s2s.py ``--seed``).

Usage (from the repository root)::

    python benchmarks/summarise_seeds.py benchmarks/results/s2s.json benchmarks/results/s2s_seed1.json \
        benchmarks/results/s2s_seed2.json --methods gaussian,pca_gaussian,s2s --out benchmarks/results/s2s_seeds.md

Writes a Markdown table: per slide and method, the median-over-genes PCC and RMSE of each run and
their mean and spread (sample standard deviation) over the runs; then the mean over slides per run,
and how often ``s2s`` beats each other method per run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def load(paths: list[str]) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


def table(runs: list[dict], methods: list[str], key: str) -> dict[tuple[str, str], list[float]]:
    """``(slide, method) -> [value per run]`` of a metric (``pcc_median`` or ``rmse_median``)."""
    out: dict[tuple[str, str], list[float]] = {}
    for run in runs:
        for s in run["slides"]:
            for m in methods:
                v = s["methods"].get(m, {}).get(key)
                out.setdefault((s["name"], m), []).append(np.nan if v is None else float(v))
    return out


def _fmt(vals: list[float]) -> str:
    v = np.asarray(vals, float)
    sd = f" ± {np.nanstd(v, ddof=1):.3f}" if np.isfinite(v).sum() > 1 else ""
    return f"{np.nanmean(v):.3f}{sd}"


def markdown(runs: list[dict], paths: list[str], methods: list[str], target: str = "s2s") -> str:
    seeds = [r.get("seed") for r in runs]
    pcc = table(runs, methods, "pcc_median")
    rmse = table(runs, methods, "rmse_median")
    slides = list(dict.fromkeys(name for name, _ in pcc))
    lines = [
        f"# {target} over seeds {', '.join(map(str, seeds))} (hold-out benchmark, budget {runs[0].get('budget_s')} s)",
        "",
        "Runs: " + ", ".join(f"`{p}` (seed {s})" for p, s in zip(paths, seeds)) + ".",
        "Each value is the median over genes on the hidden spots; *mean ± sd* is over the runs (seeds).",
        "",
        "| slide | method | PCC per seed | PCC mean ± sd | RMSE per seed | RMSE mean ± sd |",
        "|---|---|---|---|---|---|",
    ]
    for sl in slides:
        for m in methods:
            p, r = pcc[(sl, m)], rmse[(sl, m)]
            lines.append(
                f"| {sl} | {m} | {' / '.join(f'{x:.3f}' for x in p)} | {_fmt(p)} | "
                f"{' / '.join(f'{x:.3f}' for x in r)} | {_fmt(r)} |"
            )
    lines += ["", "Mean over slides, per seed:", "", "| method | " + " | ".join(f"seed {s} PCC / RMSE" for s in seeds)
              + " | mean PCC / RMSE |", "|---|" + "---|" * (len(seeds) + 1)]
    for m in methods:
        per = [(np.nanmean([pcc[(sl, m)][i] for sl in slides]), np.nanmean([rmse[(sl, m)][i] for sl in slides]))
               for i in range(len(runs))]
        lines.append(f"| {m} | " + " | ".join(f"{a:.3f} / {b:.3f}" for a, b in per)
                     + f" | {np.mean([a for a, _ in per]):.3f} / {np.mean([b for _, b in per]):.3f} |")
    if target in methods:
        lines += ["", f"Slides where `{target}` is better, per seed (PCC higher / RMSE lower):", "",
                  "| versus | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
        for m in methods:
            if m == target:
                continue
            cells = []
            for i in range(len(runs)):
                wp = sum(pcc[(sl, target)][i] > pcc[(sl, m)][i] for sl in slides)
                wr = sum(rmse[(sl, target)][i] < rmse[(sl, m)][i] for sl in slides)
                cells.append(f"PCC {wp}/{len(slides)}, RMSE {wr}/{len(slides)}")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="benchmark JSON files (run_s2s.py output), one per seed")
    ap.add_argument("--methods", default="gaussian,pca_gaussian,s2s")
    ap.add_argument("--target", default="s2s")
    ap.add_argument("--out", default=None, help="Markdown file (default: print)")
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    text = markdown(load(args.runs), args.runs, methods, args.target)
    cmd = "python benchmarks/summarise_seeds.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text += f"\nCommand: `{cmd}`\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
