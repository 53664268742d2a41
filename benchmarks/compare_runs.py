"""Paired comparison of two sets of hold-out runs of one method (e.g. the engine before and after a change).

Usage (from the repository root)::

    python benchmarks/compare_runs.py --old benchmarks/results/single_choice/s2s_seed0.json,... \
        --new benchmarks/results/s2s_seed0.json,... --method s2s --out benchmarks/results/base_stack.md

Runs are paired in the order given (same seed and measured coset; the script checks). Per slide and
run: the method's median-over-genes PCC and RMSE on the hidden spots before and after, and whether
each is at least as good as the best classical method of that run (``--classical``); then the mean
change, how many tasks went up or down, and the standard error of the mean change.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from summarise_seeds import run_label

CLASSICAL = "nearest,linear,cubic,gaussian,pca_gaussian,he_gaussian,kriging"


def _slides(run: dict) -> dict:
    return {s["name"]: s["methods"] for s in run["slides"]}


def _best(methods: dict, names: list[str]) -> tuple[float, float]:
    pcc = [methods[m]["pcc_median"] for m in names if m in methods and methods[m]["pcc_median"] is not None]
    rmse = [methods[m]["rmse_median"] for m in names if m in methods and methods[m]["rmse_median"] is not None]
    pcc = [v for v in pcc if v == v]
    rmse = [v for v in rmse if v == v]
    return max(pcc), min(rmse)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="comma-separated run JSONs (before)")
    ap.add_argument("--new", required=True, help="comma-separated run JSONs (after), paired with --old")
    ap.add_argument("--method", default="s2s")
    ap.add_argument("--new-method", default=None, help="the method's name in the --new runs (default: --method)")
    ap.add_argument("--classical", default=CLASSICAL)
    ap.add_argument("--title", default="Before and after")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    olds, news = args.old.split(","), args.new.split(",")
    if len(olds) != len(news):
        ap.error("--old and --new need the same number of runs")
    classical = args.classical.split(",")
    m = args.method
    mn = args.new_method or m
    rows, dp, dr, wins = [], [], [], np.zeros(4, int)
    for po, pn in zip(olds, news):
        ro, rn = json.loads(Path(po).read_text()), json.loads(Path(pn).read_text())
        if (ro.get("seed"), ro.get("phase", 0)) != (rn.get("seed"), rn.get("phase", 0)):
            ap.error(f"{po} and {pn} are not the same task (seed, phase)")
        so, sn = _slides(ro), _slides(rn)
        for name in sn:
            if mn not in sn[name] or name not in so or m not in so[name]:
                continue
            a, b = so[name][m], sn[name][mn]
            bp, br = _best(sn[name], classical)
            dp.append(b["pcc_median"] - a["pcc_median"])
            dr.append(b["rmse_median"] - a["rmse_median"])
            flags = [a["pcc_median"] >= bp, b["pcc_median"] >= bp, a["rmse_median"] <= br, b["rmse_median"] <= br]
            wins += np.asarray(flags, int)
            rows.append(
                f"| {name} | {run_label(rn)} | {a['pcc_median']:.3f} | {b['pcc_median']:.3f} | {dp[-1]:+.3f} | "
                f"{a['rmse_median']:.3f} | {b['rmse_median']:.3f} | {dr[-1]:+.3f} | {bp:.3f} / {br:.3f} |"
            )
    dp_a, dr_a = np.asarray(dp), np.asarray(dr)
    n = len(dp_a)
    se = lambda v: float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")  # noqa: E731
    lines = [
        f"# {args.title}",
        "",
        f"Command: `python benchmarks/compare_runs.py --old {args.old} --new {args.new} --method {m} "
        + (f"--new-method {mn} " if mn != m else "")
        + f'--title "{args.title}" --out {args.out}`',
        "",
        (f"`{m}` (before) against `{mn}` (after)" if mn != m else f"`{m}`")
        + " per slide and run (seed, measured coset), median over genes on the hidden spots; "
        f"best classical = the best of {', '.join(classical)} in that run.",
        "",
        "| slide | run | PCC before | PCC after | change | RMSE before | RMSE after | change | best classical PCC / RMSE |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Over {n} tasks: mean PCC change {dp_a.mean():+.4f} (standard error {se(dp_a):.4f}; up on "
        f"{int((dp_a > 0).sum())}, down on {int((dp_a < 0).sum())}); mean RMSE change {dr_a.mean():+.4f} "
        f"(standard error {se(dr_a):.4f}; lower on {int((dr_a < 0).sum())}, higher on {int((dr_a > 0).sum())}).",
        f"At least the best classical method: PCC before {wins[0]}/{n}, after {wins[1]}/{n}; "
        f"RMSE before {wins[2]}/{n}, after {wins[3]}/{n}.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-2:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
