"""S2S-ST benchmark: the hold-out protocol on the shared slides, training speed and memory.

Usage (from the repository root)::

    # the committed table: s2s (fast preset, 120 s budget) against the baselines, every shared slide
    nice -n 5 python benchmarks/run_s2s.py --budget 120 --name s2s
    # levers: ablations at a shorter budget on some slides
    nice -n 5 python benchmarks/run_s2s.py --budget 30 --methods s2s,s2s-nocross,... --name s2s_levers
    # training speed (steps/s) and peak memory per preset, one subprocess each
    nice -n 5 python benchmarks/run_s2s.py --speed --name s2s_speed

Writes ``benchmarks/results/NAME.json`` (the benchmark JSON of the CLI contract plus run facts:
command, wall time, peak memory, load average) and ``NAME.md`` (tables: per slide, mean over
slides, S2S training facts, wins/losses of ``s2s`` against each other method).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

from run_benchmark import HERE, ROOT, data_dir  # noqa: E402,F401  (one place says where the slides are)

DEFAULT_METHODS = "nearest,linear,cubic,gaussian,kriging,pca_gaussian,dist,he_gaussian,s2s"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _f(x, nd=3):
    return "—" if x is None else f"{x:.{nd}f}"


def wins_table(result: dict, ref: str = "s2s") -> str:
    """``ref`` against every other method: slides where it has the higher median PCC / lower RMSE."""
    others = sorted({m for s in result["slides"] for m in s["methods"] if m != ref})
    lines = [f"| {ref} vs | slides | PCC wins | RMSE wins | mean dPCC | mean dRMSE |", "|---|---:|---:|---:|---:|---:|"]
    for o in others:
        dp, dr, wp, wr, n = [], [], 0, 0, 0
        for s in result["slides"]:
            a, b = s["methods"].get(ref, {}), s["methods"].get(o, {})
            if a.get("pcc_median") is None or b.get("pcc_median") is None:
                continue
            n += 1
            dp.append(a["pcc_median"] - b["pcc_median"])
            dr.append(a["rmse_median"] - b["rmse_median"])
            wp += a["pcc_median"] > b["pcc_median"]
            wr += a["rmse_median"] < b["rmse_median"]
        if n:
            lines.append(f"| {o} | {n} | {wp} | {wr} | {sum(dp) / n:+.3f} | {sum(dr) / n:+.3f} |")
    return "\n".join(lines)


def s2s_facts(result: dict) -> str:
    lines = [
        "| slide | method | steps | steps/s | base predictor | network weight | held-out gain | seconds |",
        "|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for s in result["slides"]:
        for m, rec in s["methods"].items():
            d = rec.get("details") or {}
            if "steps" in d:
                gain = (d.get("oof") or {}).get("gain")
                lines.append(
                    f"| {s['name']} | {m} | {d['steps']} | {_f(d.get('steps_per_s'), 2)} | {d.get('base', '—')} | "
                    f"{_f(d.get('alpha'), 2)} | {'—' if gain is None else f'{100 * gain:.1f} %'} | {_f(rec.get('seconds'), 1)} |"
                )
    return "\n".join(lines)


def run_table(args) -> int:
    from napari_s2s.core.evaluation.benchmark import markdown_table, run_benchmark

    paths = sorted(str(p) for p in data_dir().iterdir())
    if args.slides:
        want = args.slides.split(",")
        paths = [p for p in paths if any(Path(p).name.startswith(w) for w in want)]
    methods = args.methods.split(",")
    options = json.loads(args.options) if args.options else None
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        common = dict(
            methods=methods,
            budget_s=args.budget,
            seed=args.seed,
            progress=print,
            method_options=options,
            phase=args.phase,
        )
        if args.gene_ranks:
            result = run_ranked_genes(paths, args.gene_ranks, **common)
        else:
            result = run_benchmark(paths, n_genes=args.genes, **common)
    wall = time.perf_counter() - t0
    result["run"] = {
        "command": " ".join(["python", "benchmarks/run_s2s.py"] + sys.argv[1:]),
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "loadavg_start": [round(x, 2) for x in load0],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "method_options": options,
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    md = [
        f"# {args.name}: hold-out benchmark on the shared slides",
        "",
        f"Command: `{_niceness()}{result['run']['command']}` (seed {args.seed}, budget {args.budget} s, "
        f"wall {wall:.0f} s, peak RSS {result['run']['peak_rss_mb']:.0f} MB, load average "
        f"{load0[0]:.1f} -> {result['run']['loadavg_end'][0]:.1f} on {os.cpu_count()} shared cores).",
        "",
        markdown_table(result),
        "",
        "## S2S training",
        "",
        s2s_facts(result),
        "",
        "## s2s against each method (per slide, median over genes)",
        "",
        wins_table(result) if any("s2s" in s["methods"] for s in result["slides"]) else "(s2s not run)",
        "",
    ]
    (out / f"{args.name}.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


def ranked_genes(slide, ranks: str, phase: int) -> list[str]:
    """The genes ranked ``A`` to ``B`` (``"A:B"``, 1-based, inclusive) by variance over the measured spots.

    The same ranking as the benchmark's ``top:N`` (:meth:`Slide.top_variable_genes` over the measured
    coset, genes detected in >= 10 % of it): ``31:60`` are the next 30 genes after the benchmark's, which
    no setting of the engine was chosen on.
    """
    from napari_s2s.core.evaluation.benchmark import MIN_DETECTED, holdout_masks

    lo, hi = (int(x) for x in ranks.split(":"))
    measured, _ = holdout_masks(slide, phase)
    return slide.top_variable_genes(hi, spots=measured, min_detected=MIN_DETECTED)[lo - 1 : hi]


def run_ranked_genes(paths: list[str], ranks: str, **options) -> dict:
    """:func:`run_benchmark` slide by slide, each on its own genes of ranks ``ranks`` (``"A:B"``); other
    keyword options as :func:`run_benchmark`'s."""
    from napari_s2s.core.data.io import read_slide
    from napari_s2s.core.errors import SlideError
    from napari_s2s.core.evaluation.benchmark import run_benchmark

    result = None
    for path in paths:
        try:
            slide = read_slide(path)
        except SlideError as exc:  # not a slide (the data folder's README, formats/): as run_benchmark skips it
            print(f"skipped {path}: {exc}")
            continue
        one = run_benchmark([slide], genes=ranked_genes(slide, ranks, options.get("phase", 0)), **options)
        if result is None:
            result = one
        else:
            result["slides"] += one["slides"]
            result["skipped"] += one["skipped"]
    result["gene_ranks"] = ranks
    return result


# ---------------------------------------------------------------------- speed
def speed_one(preset: str, seconds: float, slide_name: str) -> dict:
    """Train one preset on a real slide for ``seconds`` (1 thread); steps/s and peak memory."""
    import torch

    from napari_s2s.core.data.io import read_slide
    from napari_s2s.core.evaluation.benchmark import build_holdout
    from napari_s2s.core.methods.s2s import to_lattice
    from napari_s2s.core.s2s.engine import S2SConfig, S2SImputer, cross_gene_matrix
    from napari_s2s.core.s2s.model import n_parameters
    from napari_s2s.core.s2s.train import make_model

    torch.set_num_threads(1)
    slide = read_slide(str(data_dir() / slide_name))
    task, _, _ = build_holdout(slide)
    lr, lc, tr, tc = to_lattice(task)
    cfg = S2SConfig.from_preset(preset, budget_s=seconds, threads=1)
    imp = S2SImputer(cfg)
    allg = cross_gene_matrix(task.measured_all_genes)
    t_first = None
    t0 = time.perf_counter()
    for ev in imp.fit_arrays_iter(lr, lc, task.kind, task.measured_values, list(task.genes), all_genes=allg):
        if ev.phase == "train" and t_first is None:
            t_first = time.perf_counter()
    t_train = time.perf_counter() - (t_first or t0)
    t1 = time.perf_counter()
    imp.config.tta = False  # one pass (test-time averaging multiplies this by 4 on hex, 8 on square)
    imp.impute_arrays(lr, lc, task.kind, task.measured_values, tr, tc, all_genes=allg)
    return {
        "preset": preset,
        "slide": slide_name,
        "parameters": n_parameters(make_model(imp.n_channels, cfg)),
        "batch": cfg.batch_size,
        "patch": imp.stats["patch"],
        "steps": imp.stats["steps"],
        "train_s": round(imp.stats["train_seconds"], 1),
        "steps_per_s": round(max(imp.stats["steps"] - 1, 0) / max(t_train, 1e-9), 3),
        "impute_s": round(time.perf_counter() - t1, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "loadavg": round(os.getloadavg()[0], 2),
    }


def run_speed(args) -> int:
    rows = []
    for preset, secs in (("fast", args.speed_seconds), ("paper", args.speed_seconds)):
        for slide in args.speed_slides.split(","):
            cmd = [
                sys.executable,
                __file__,
                "--speed-one",
                preset,
                "--speed-seconds",
                str(secs),
                "--speed-slides",
                slide,
            ]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    out = HERE / "results"
    (out / f"{args.name}.json").write_text(json.dumps(rows, indent=1))
    md = [
        f"# {args.name}: S2S training speed and memory (1 torch thread, shared 2-core CPU)",
        "",
        f"Command: `{_niceness()}python benchmarks/run_s2s.py --speed --speed-seconds {args.speed_seconds} "
        f"--speed-slides {args.speed_slides} --name {args.name}` (one subprocess per row; peak RSS of that process; "
        "training without validation; impute = one pass over the slide's hold-out targets without test-time averaging).",
        "",
        "| preset | slide | parameters | batch | window | steps | train s | steps/s | impute s | peak RSS MB | load avg |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        md.append(
            f"| {r['preset']} | {r['slide']} | {r['parameters']:,} | {r['batch']} | {r['patch']} | {r['steps']} | "
            f"{r['train_s']} | {r['steps_per_s']} | {r['impute_s']} | {r['peak_rss_mb']:.0f} | {r['loadavg']} |"
        )
    (out / f"{args.name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


def _niceness() -> str:
    """``"nice -n N "`` when this process runs at a lower priority, else ``""`` (for the recorded command)."""
    n = os.nice(0) if hasattr(os, "nice") else 0
    return f"nice -n {n} " if n > 0 else ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=DEFAULT_METHODS)
    ap.add_argument("--budget", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--phase", type=int, default=0, help="measured coset 0-3 (0: the benchmark's; 1-3: more tasks)")
    ap.add_argument("--genes", type=int, default=30, help="how many genes (the most variable) each task scores")
    ap.add_argument(
        "--gene-ranks",
        default=None,
        help="A:B: score each slide's genes ranked A to B by variance instead of the top --genes (e.g. 31:60)",
    )
    ap.add_argument("--slides", default=None, help="comma-separated name prefixes (default: every shared slide)")
    ap.add_argument("--options", default=None, help="JSON: method name -> options")
    ap.add_argument("--name", default="s2s")
    ap.add_argument("--speed", action="store_true", help="measure steps/s and memory per preset")
    ap.add_argument("--speed-one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--speed-seconds", type=float, default=30.0)
    ap.add_argument("--speed-slides", default="her2st_C2.h5ad,visium_mouse_brain")
    args = ap.parse_args(argv)
    if args.speed_one:
        print(json.dumps(speed_one(args.speed_one, args.speed_seconds, args.speed_slides)))
        return 0
    if args.speed:
        return run_speed(args)
    return run_table(args)


if __name__ == "__main__":
    sys.exit(main())
