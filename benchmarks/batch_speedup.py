"""Cohort imputation: `napari-s2s batch` on 1 vs 2 Dask workers, against a shell loop of `napari-s2s impute`.

Usage (from the repository root)::

    nice -n 10 python benchmarks/batch_speedup.py                  # 4 shared slides, 40 training steps each
    nice -n 10 python benchmarks/batch_speedup.py --workers 1,2,4 --max-steps 100 --name batch_speedup_long

Every run imputes the same slides with the same options into a fresh folder. Training is limited by steps
(``--max-steps``), not by time, so that each run does the same work and wall time measures throughput
(a time budget would make every slide take at least the budget whatever the parallelism). Wall time
covers the whole command: starting the local cluster, every slide, closing the cluster.

Writes ``benchmarks/results/NAME.json`` (runs, options, load averages, the command) and ``NAME.md``.
The machine is shared: the load average (``os.getloadavg``) before and after each run is in the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run_benchmark import HERE, ROOT, data_dir  # noqa: F401  (one place says where the slides are)

DEFAULT_SLIDES = "her2st_C2.h5ad,her2st_B4.h5ad,st_breast_cancer_layer2.h5ad,st_mouse_olfactory_bulb.h5ad"
CLI = [sys.executable, "-m", "napari_s2s.cli"]


def run(cmd: list[str]) -> tuple[float, tuple, tuple]:
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"failed ({out.returncode}): {shlex.join(cmd)}\n{out.stderr[-2000:]}")
    return wall, load0, os.getloadavg()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slides", default=DEFAULT_SLIDES, help="comma-separated file names in the data folder")
    ap.add_argument("--workers", default="1,2", help="worker counts to run (default 1,2)")
    ap.add_argument("--max-steps", type=int, default=40, help="training steps per slide (default 40)")
    ap.add_argument("--genes", default="top:10")
    ap.add_argument("--no-loop", action="store_true", help="skip the shell-loop-of-impute reference")
    ap.add_argument("--name", default="batch_speedup")
    args = ap.parse_args()

    data = data_dir()
    slides = [str(data / s) for s in args.slides.split(",")]
    opts = [
        "--genes",
        args.genes,
        "--max-steps",
        str(args.max_steps),
        "--budget",
        "3600",
        "--device",
        "cpu",
        "--seed",
        "0",
        "--quiet",
    ]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_loop:  # the way before `batch`: one process per slide, one after the other
            out = Path(tmp, "loop")
            out.mkdir()
            load0 = os.getloadavg()
            t0 = time.perf_counter()
            for s in slides:
                run(CLI + ["impute", s, "--out", str(out / f"{Path(s).stem}_s2s.h5ad"), "--threads", "1"] + opts)
            runs.append(
                {
                    "how": "shell loop of `impute` (1 thread)",
                    "workers": 1,
                    "wall_s": time.perf_counter() - t0,
                    "load_before": load0,
                    "load_after": os.getloadavg(),
                }
            )
            print(runs[-1], flush=True)
        for w in [int(x) for x in args.workers.split(",")]:
            out = Path(tmp, f"w{w}")
            wall, l0, l1 = run(CLI + ["batch", *slides, "--out-dir", str(out), "--workers", str(w)] + opts)
            with open(out / "manifest.csv") as fh:
                rows = fh.read().splitlines()[1:]
            assert len(rows) == len(slides) and all(",done," in r for r in rows), rows
            task_s = sum(float(r.split(",")[3]) for r in rows)
            runs.append(
                {
                    "how": f"`batch --workers {w}`",
                    "workers": w,
                    "wall_s": wall,
                    "task_s_sum": task_s,
                    "load_before": l0,
                    "load_after": l1,
                }
            )
            print(runs[-1], flush=True)

    base = next((r["wall_s"] for r in runs if r["how"].startswith("`batch --workers 1`")), runs[0]["wall_s"])
    for r in runs:
        r["speedup_vs_1_worker"] = base / r["wall_s"]
    command = "nice -n 10 python benchmarks/batch_speedup.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    record = {
        "command": command.strip(),
        "slides": [Path(s).name for s in slides],
        "options": opts,
        "cpu_cores": len(os.sched_getaffinity(0)),
        "machine": platform.platform(),
        "runs": runs,
    }
    res = HERE / "results"
    (res / f"{args.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [
        f"# Cohort imputation on 1 vs 2 Dask workers ({len(slides)} slides)",
        "",
        f"Command: `{record['command']}` (from the repository root). Slides: {', '.join(record['slides'])}; "
        f"options `{' '.join(opts)}`; {record['cpu_cores']} CPU cores, shared with other developers' jobs "
        "(load average = runnable processes, 1-minute, before and after each run).",
        "",
        "| how | workers | wall s | speed-up vs 1 worker | sum of task s | load before | load after |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        task = f"{r['task_s_sum']:.1f}" if "task_s_sum" in r else "—"
        lines.append(
            f"| {r['how']} | {r['workers']} | {r['wall_s']:.1f} | {r['speedup_vs_1_worker']:.2f} | {task} | "
            f"{r['load_before'][0]:.2f} | {r['load_after'][0]:.2f} |"
        )
    (res / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
