"""Seconds before training starts: reading, choosing and fitting the base predictor, the training windows.

A user waits this long after clicking Train before the first step (and, in a dock with a small budget,
it is time the networks do not get). For each shared slide, ``S2SImputer.fit_iter`` runs with one
training step, default settings and ``--genes`` top variable genes; the table has the seconds at which
each preparation stage began (the engine's progress events) and the base predictor it chose. With
``--save`` / ``--reference`` the base's predictions on the dense grid are kept and compared, so that a
faster code can show it predicts the same::

    PYTHONPATH=/tmp/old/src python benchmarks/prepare_speed.py --label before --save /tmp/prep_ref --out F
    python benchmarks/prepare_speed.py --label after --reference /tmp/prep_ref --out F --append
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run_benchmark import data_dir  # noqa: E402

SLIDES = (
    "her2st_B4.h5ad",
    "her2st_C2.h5ad",
    "st_breast_cancer_layer2.h5ad",
    "st_mouse_olfactory_bulb.h5ad",
    "visium_mouse_brain_dg.h5ad",
    "visium_mouse_brain",
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genes", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--label", default="run")
    ap.add_argument("--save", type=Path, help="folder to keep each slide's base predictions in")
    ap.add_argument("--reference", type=Path, help="folder of a --save run to compare with")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args(argv)
    import numpy as np
    import torch

    import napari_s2s
    from napari_s2s.core.data.io import read_slide
    from napari_s2s.core.s2s.engine import S2SConfig, S2SImputer

    torch.set_num_threads(args.threads)
    rows_md = []
    for name in SLIDES:
        slide = read_slide(data_dir() / name)
        genes = list(slide.top_variable_genes(args.genes))
        cfg = S2SConfig.from_preset("fast", max_steps=1, budget_s=None, threads=args.threads, seed=0)
        imp = S2SImputer(cfg)
        stages = {}
        t0 = time.perf_counter()
        for ev in imp.fit_iter(slide, genes):
            if ev.phase == "prepare":
                stages.setdefault(ev.message.split(" (")[0], time.perf_counter() - t0)
        fit_s = time.perf_counter() - t0
        base_s = stages.get("building training windows", float("nan")) - stages.get("choosing the base predictor", 0.0)
        windows_s = stages.get("loading natural images", float("nan")) - stages.get("building training windows", 0.0)
        imp.alpha = 0.0  # the result is the base alone
        dense = np.asarray(imp.impute(slide, genes).values, np.float32)
        key = name.replace(".h5ad", "")
        diff = "-"
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            np.save(args.save / f"{key}.npy", dense)
        if args.reference:
            ref = np.load(args.reference / f"{key}.npy")
            diff = f"{float(np.abs(ref - dense).max()):.1e}"
        label = imp.base.label
        rows_md.append(
            f"| {key} | {len(slide.usable().nonzero()[0])} | {base_s:.2f} | {windows_s:.2f} | {fit_s:.2f} | {label} | {diff} |"
        )
        print(rows_md[-1], flush=True)
    cmd = shlex.join(["python", "benchmarks/prepare_speed.py"] + list(argv if argv is not None else sys.argv[1:]))
    head = [
        "# Preparing a run: seconds before training starts (fast preset, one training step)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs (timings are noisy); "
        f"torch {torch.__version__}.",
        "",
    ]
    lines = [] if args.append else head
    lines += [
        f"## {args.label}",
        "",
        f"`{cmd}` (napari-s2s {napari_s2s.__version__}, {os.environ.get('PYTHONPATH', 'this checkout')}); "
        f"load average {os.getloadavg()[0]:.1f}",
        "",
        "| slide | usable spots | base predictor (s) | training windows (s) | whole fit, 1 step (s) | base | max abs diff of the base's dense maps vs reference |",
        "|---|---:|---:|---:|---:|---|---:|",
        *rows_md,
        "",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a" if args.append else "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
