"""Summarise hold-out benchmark runs that differ only by their seed (run_s2s.py ``--seed``).

Usage (from the repository root)::

    python benchmarks/summarise_seeds.py benchmarks/results/s2s_seed0.json benchmarks/results/s2s_seed1.json \
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


def run_label(run: dict) -> str:
    """A run's label: its seed, and its measured coset when not the benchmark's (run_s2s.py ``--phase``)."""
    seed = str(run.get("seed"))
    return f"{seed}, phase {run['phase']}" if run.get("phase") else seed


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
    seeds = [run_label(r) for r in runs]
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
    lines += [
        "",
        "Mean over slides, per seed:",
        "",
        "| method | " + " | ".join(f"seed {s} PCC / RMSE" for s in seeds) + " | mean PCC / RMSE |",
        "|---|" + "---|" * (len(seeds) + 1),
    ]
    for m in methods:
        per = [
            (np.nanmean([pcc[(sl, m)][i] for sl in slides]), np.nanmean([rmse[(sl, m)][i] for sl in slides]))
            for i in range(len(runs))
        ]
        lines.append(
            f"| {m} | "
            + " | ".join(f"{a:.3f} / {b:.3f}" for a, b in per)
            + f" | {np.mean([a for a, _ in per]):.3f} / {np.mean([b for _, b in per]):.3f} |"
        )
    if target in methods:
        lines += [
            "",
            f"Slides where `{target}` is better, per seed (PCC higher / RMSE lower):",
            "",
            "| versus | " + " | ".join(f"seed {s}" for s in seeds) + " |",
            "|---|" + "---|" * len(seeds),
        ]
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


def best_of(runs: list[dict], i: int, slide: str, classical: list[str]) -> tuple[float, str, float, str]:
    """Best PCC (highest) and best RMSE (lowest) among ``classical`` methods on a slide in run ``i``."""
    rec = next(s for s in runs[i]["slides"] if s["name"] == slide)["methods"]
    have = [m for m in classical if rec.get(m, {}).get("pcc_median") is not None]
    bp = max(have, key=lambda m: rec[m]["pcc_median"])
    br = min(have, key=lambda m: rec[m]["rmse_median"])
    return rec[bp]["pcc_median"], bp, rec[br]["rmse_median"], br


def targets(runs: list[dict], target: str, classical: list[str], label: str) -> str:
    """Per slide and seed: ``target`` against the best of ``classical`` on that slide (PCC >=, RMSE <=)."""
    seeds = [run_label(r) for r in runs]
    slides = [s["name"] for s in runs[0]["slides"]]
    lines = [
        f"### Against the best of {label} ({', '.join(classical)}), per slide",
        "",
        "| slide | seed | best PCC (method) | "
        + target
        + " PCC | best RMSE (method) | "
        + target
        + " RMSE | "
        + target
        + " seconds | PCC >= | RMSE <= |",
        "|---|---:|---|---:|---|---:|---:|:-:|:-:|",
    ]
    gaps, ok_p, ok_r, n = [], 0, 0, 0
    for sl in slides:
        for i, seed in enumerate(seeds):
            bp, mp, br, mr = best_of(runs, i, sl, classical)
            t = next(s for s in runs[i]["slides"] if s["name"] == sl)["methods"].get(target, {})
            if t.get("pcc_median") is None:
                continue
            n += 1
            gp, gr = t["pcc_median"] >= bp, t["rmse_median"] <= br
            ok_p += gp
            ok_r += gr
            gaps.append(t["pcc_median"] - bp)
            lines.append(
                f"| {sl} | {seed} | {bp:.3f} ({mp}) | {t['pcc_median']:.3f} | {br:.3f} ({mr}) | "
                f"{t['rmse_median']:.3f} | {t.get('seconds', float('nan')):.0f} | {'yes' if gp else '**no**'} | "
                f"{'yes' if gr else '**no**'} |"
            )
    lines += [
        "",
        f"{target}: PCC >= the best on {ok_p}/{n} (slide, seed) pairs, RMSE <= the best on {ok_r}/{n}; "
        f"mean PCC {np.mean(gaps):+.3f} above the best (per slide and seed; target: >= +0.02).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="benchmark JSON files (run_s2s.py output), one per seed")
    ap.add_argument("--methods", default="gaussian,pca_gaussian,s2s")
    ap.add_argument("--target", default="s2s")
    ap.add_argument("--out", default=None, help="Markdown file (default: print)")
    ap.add_argument(
        "--classical", default=None, help="comma-separated non-learned methods: add the target-vs-best-of-them tables"
    )
    ap.add_argument(
        "--classical-plus", default=None, help="more non-learned methods for a second such table (e.g. new baselines)"
    )
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    runs = load(args.runs)
    text = markdown(runs, args.runs, methods, args.target)
    if args.classical:
        cl = [m for m in args.classical.split(",") if m]
        text += "\n## Targets\n\n" + targets(runs, args.target, cl, "the classical methods")
        if args.classical_plus:
            text += "\n" + targets(runs, args.target, cl + args.classical_plus.split(","), "every non-learned method")
    cmd = "python benchmarks/summarise_seeds.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text += f"\nCommand: `{cmd}`\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
