"""Seconds of the final maps: ``S2SImputer.impute`` on the Visium mouse brain, 30 genes, default settings.

The model is trained for a few steps only (the weights do not change the cost of inference); the
blend weight is then set to 0.5 so that the networks run (a weight of 0 would skip them and time
the base predictor alone). Each impute is timed twice in the same process (the first call also
computes the slide's H&E feature maps and the base predictor's kriging factorisation, which a
widget keeps between previews and the final maps).

Run the same script against another checkout to compare (``PYTHONPATH=/path/to/old/src``); the
script only uses ``S2SImputer(config).fit(slide, genes)`` and ``.impute(slide, genes)``::

    python benchmarks/final_maps_speed.py --threads 1 --label "after" --out benchmarks/results/final_maps_speed.md --append
    PYTHONPATH=/tmp/old/src python benchmarks/final_maps_speed.py --threads 1 --label "before" ...
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genes", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--label", default="run")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args(argv)
    import numpy as np
    import torch

    import napari_s2s
    from napari_s2s.core.data.io import read_slide
    from napari_s2s.core.s2s.engine import S2SConfig, S2SImputer

    torch.set_num_threads(args.threads)
    slide = read_slide(data_dir() / "visium_mouse_brain")
    genes = list(slide.top_variable_genes(args.genes))
    cfg = S2SConfig.from_preset("fast", max_steps=4, budget_s=None, threads=args.threads, seed=0)
    imp = S2SImputer(cfg)
    t0 = time.perf_counter()
    imp.fit(slide, genes)
    fit_s = time.perf_counter() - t0
    if getattr(imp, "alpha", None) is not None:
        imp.alpha = 0.5  # make sure the networks run
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        res = imp.impute(slide, genes)
        times.append(time.perf_counter() - t0)
    fields = {k: getattr(cfg, k) for k in ("tta", "attention", "folds", "precision", "histology") if hasattr(cfg, k)}
    cmd = shlex.join(["python", "benchmarks/final_maps_speed.py"] + list(argv if argv is not None else sys.argv[1:]))
    lines = (
        []
        if args.append
        else [
            "# Final maps: seconds of `S2SImputer.impute` (Visium mouse brain, fast preset)",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs (timings are noisy); "
            f"torch {torch.__version__}.",
            "",
        ]
    )
    lines += [
        f"## {args.label}",
        "",
        f"`{cmd}` (napari-s2s {napari_s2s.__version__}, "
        f"{os.environ.get('PYTHONPATH', 'this checkout')}); load average {os.getloadavg()[0]:.1f}",
        "",
        "| genes | dense positions | torch threads | settings | fit (s) | first impute (s) | second impute (s) |",
        "|---:|---:|---:|---|---:|---:|---:|",
        f"| {len(genes)} | {len(res.dense_rows)} | {args.threads} | {fields} | {fit_s:.1f} | {times[0]:.2f} | {times[1]:.2f} |",
        "",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    assert np.all(np.isfinite(res.values))
    if args.out:
        with open(args.out, "a" if args.append else "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
