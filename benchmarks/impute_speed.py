"""Seconds of :meth:`S2SImputer.impute` (first and second call in a process), fast preset, 1 torch thread.

The model is trained with ``max_steps=5`` (the weights do not change the cost of inference). With
``--save DIR`` the trained imputers and their predictions are written there; with ``--reference DIR``
the imputers saved there are loaded instead of trained and the predictions are compared with the
saved ones (max abs difference reported), which checks that a speed change keeps the numbers::

    python benchmarks/impute_speed.py --save /tmp/impute_ref --out benchmarks/results/impute_speed.md
    python benchmarks/impute_speed.py --reference /tmp/impute_ref --out benchmarks/results/impute_speed.md --append
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

SLIDES = ("synthetic", "../shared/data/visium_mouse_brain")


def load(name: str):
    if name == "synthetic":
        from napari_s2s.core.synthetic import make_synthetic_slide

        return make_synthetic_slide()
    from napari_s2s.core.io import read_slide

    return read_slide(name)


def measure(name: str, save: Path | None, reference: Path | None) -> dict:
    from napari_s2s.core.engine import S2SConfig, S2SImputer

    slide = load(name)
    tag = Path(name).name
    if reference is not None:
        imp = S2SImputer.load(reference / f"{tag}.pt")
    else:
        genes = list(slide.top_variable_genes(8))
        imp = S2SImputer(S2SConfig.from_preset("fast", max_steps=5, budget_s=None, threads=1, seed=0))
        imp.fit(slide, genes)
    times = []
    res = None
    for _ in range(2):
        t0 = time.perf_counter()
        res = imp.impute(slide)
        times.append(time.perf_counter() - t0)
    row = dict(slide=tag, spots=int(slide.usable().sum()), targets=len(res.dense_rows), genes=len(res.genes),
               first=times[0], second=times[1], diff=None)
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        imp.save(save / f"{tag}.pt")
        np.save(save / f"{tag}.npy", res.values)
    if reference is not None:
        ref = np.load(reference / f"{tag}.npy")
        row["diff"] = float(np.abs(ref - res.values).max())
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--save", type=Path)
    ap.add_argument("--reference", type=Path)
    ap.add_argument("--label", default="")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = [measure(s, args.save, args.reference) for s in SLIDES]
    cmd = "python " + " ".join(["benchmarks/impute_speed.py"] + list(argv if argv is not None else sys.argv[1:]))
    lines = [] if args.append else [
        "# Impute speed (S2SImputer.impute, fast preset, model trained with max_steps=5, 1 torch thread)", "",
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, torch {torch.__version__}; "
        "2 shared CPU cores, so timings are noisy (other jobs ran at the same time).", "",
    ]
    lines += [f"## {args.label or 'run'}", "", f"`{cmd}`", "",
              "| slide | usable spots | dense targets | genes | first impute (s) | second impute (s) | max abs diff vs reference |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        d = "-" if r["diff"] is None else f"{r['diff']:.2e}"
        lines.append(f"| {r['slide']} | {r['spots']} | {r['targets']} | {r['genes']} | {r['first']:.2f} | {r['second']:.2f} | {d} |")
    text = "\n".join(lines) + "\n\n"
    print(text)
    if args.out:
        mode = "a" if args.append else "w"
        with open(args.out, mode) as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
