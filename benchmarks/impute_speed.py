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
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

SLIDES = ("synthetic", "../shared/data/visium_mouse_brain")


def load(name: str):
    if name == "synthetic":
        from napari_s2s.core.data.synthetic import make_synthetic_slide

        return make_synthetic_slide()
    from napari_s2s.core.data.io import read_slide

    return read_slide(name)


def measure(name: str, save: Path | None, reference: Path | None) -> dict:
    from napari_s2s.core.s2s.engine import S2SConfig, S2SImputer

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
    row = dict(
        slide=tag,
        spots=int(slide.usable().sum()),
        targets=len(res.dense_rows),
        genes=len(res.genes),
        first=times[0],
        second=times[1],
        diff=None,
    )
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        imp.save(save / f"{tag}.pt")
        np.save(save / f"{tag}.npy", res.values)
    if reference is not None:
        ref = np.load(reference / f"{tag}.npy")
        row["diff"] = float(np.abs(ref - res.values).max())
    return row


def _old_attention_forward(self, x, mask):
    """The window attention of 6b70dfa: the shift mask expanded to every image of the batch."""
    import torch.nn.functional as F

    bw, n, c = x.shape
    qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    bias = self.bias_table[self.rel_index.reshape(-1)].reshape(n, n, self.heads).permute(2, 0, 1)
    attn_bias = bias.unsqueeze(0)
    if mask is not None:
        nw = mask.shape[0]
        attn_bias = attn_bias.unsqueeze(0) + mask[None, :, None]
        attn_bias = attn_bias.expand(bw // nw, -1, -1, -1, -1).reshape(bw, self.heads, n, n)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias.to(q.dtype))
    return self.proj(out.transpose(1, 2).reshape(bw, n, c))


def ab(reference: Path, reps: int) -> list[str]:
    """Alternate the old and the current attention in one process (same load on the machine for both)."""
    from napari_s2s.core.s2s import model as M
    from napari_s2s.core.s2s.engine import S2SImputer

    new = M.WindowAttention.forward
    lines = ["| slide | attention | impute seconds (each run) | median |", "|---|---|---|---:|"]
    for name in SLIDES:
        slide = load(name)
        tag = Path(name).name
        imp = S2SImputer.load(reference / f"{tag}.pt")
        imp.impute(slide)
        t = {"old (6b70dfa)": [], "new": []}
        for _ in range(reps):
            for label, fwd in (("old (6b70dfa)", _old_attention_forward), ("new", new)):
                M.WindowAttention.forward = fwd
                t0 = time.perf_counter()
                imp.impute(slide)
                t[label].append(time.perf_counter() - t0)
        M.WindowAttention.forward = new
        for label, v in t.items():
            lines.append(f"| {tag} | {label} | {', '.join(f'{x:.2f}' for x in v)} | {np.median(v):.2f} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--save", type=Path)
    ap.add_argument("--reference", type=Path)
    ap.add_argument("--label", default="")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--append", action="store_true")
    ap.add_argument("--ab", type=int, default=0, help="with --reference: N alternating old/new attention runs")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.ab:
        cmd = shlex.join(["python", "benchmarks/impute_speed.py"] + list(argv if argv is not None else sys.argv[1:]))
        text = (
            "\n".join(
                [f"## {args.label or 'old vs new attention, alternating in one process'}", "", f"`{cmd}`", ""]
                + ab(args.reference, args.ab)
            )
            + "\n\n"
        )
        print(text)
        if args.out:
            with open(args.out, "a" if args.append else "w") as f:
                f.write(text)
        return 0
    rows = [measure(s, args.save, args.reference) for s in SLIDES]
    cmd = shlex.join(["python", "benchmarks/impute_speed.py"] + list(argv if argv is not None else sys.argv[1:]))
    lines = (
        []
        if args.append
        else [
            "# Impute speed (S2SImputer.impute, fast preset, model trained with max_steps=5, 1 torch thread)",
            "",
            f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, torch {torch.__version__}; "
            "2 shared CPU cores, so timings are noisy (other jobs ran at the same time).",
            "",
        ]
    )
    lines += [
        f"## {args.label or 'run'}",
        "",
        f"`{cmd}`",
        "",
        "| slide | usable spots | dense targets | genes | first impute (s) | second impute (s) | max abs diff vs reference |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        d = "-" if r["diff"] is None else f"{r['diff']:.2e}"
        lines.append(
            f"| {r['slide']} | {r['spots']} | {r['targets']} | {r['genes']} | {r['first']:.2f} | {r['second']:.2f} | {d} |"
        )
    text = "\n".join(lines) + "\n\n"
    print(text)
    if args.out:
        mode = "a" if args.append else "w"
        with open(args.out, mode) as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
