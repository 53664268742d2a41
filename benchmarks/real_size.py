"""Real-size benchmark: generated Visium HD slides of 500 k and 150 k bins x 18 k genes.

Measures peak memory (the child process's maximum resident set) and wall-clock seconds of

* ``napari-s2s info PATH --json`` on the 8 um slide (500 k bins) and the 16 um slide (150 k bins);
* opening the slide in napari with the dock widget and showing 10 genes (``viewer.open`` through the
  plugin's reader, then the dock's "top genes" with N = 10), plus the time to draw the canvas when
  the gene slider moves;
* ``napari-s2s impute`` on the 16 um slide, 10 genes, ``fast`` preset, 120 s budget: peak memory,
  the time the training ended and the time the final maps were written.

"before" runs the same commands with the code of ``--before-ref`` (default: where this branch left
main), unpacked with ``git archive`` and put first on ``PYTHONPATH``. That code reads Space Ranger
folders with ``tissue_positions.csv`` only, so the generated bin folders carry that file too.

A run replaces the rows it measures (same what, slide and code) in ``results/NAME.json`` and keeps
the others; every row records the commit it measured and the load average when it started.

Usage::

    python benchmarks/real_size.py generate            # once: writes the slides (~8 min, ~400 MB)
    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/real_size.py run --only info,viewer
    python benchmarks/real_size.py run --only impute --no-before

Results: ``benchmarks/results/real_size.json`` and ``.md``. Data folder: ``$NAPARI_S2S_BENCH_DIR``
(default ``/tmp/napari_s2s_bench``), never committed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATA = Path(os.environ.get("NAPARI_S2S_BENCH_DIR", "/tmp/napari_s2s_bench"))

SLIDES = {
    # name: (bins, bin um, genes, density)
    "hd_008um": (500_000, 8.0, 18_000, 0.01),
    "hd_016um": (150_000, 16.0, 18_000, 0.02),
}
#: ``napari-s2s impute`` variants: name -> extra options.
IMPUTE_VARIANTS = {"default": [], "tta": ["--tta"]}
#: A child using more resident memory than this is killed (the machine is shared).
MEMORY_CAP_GB = 16.0

VIEWER_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import napari
from qtpy.QtWidgets import QApplication
path = sys.argv[1]
viewer = napari.Viewer(show=True)
viewer.window.resize(1400, 900)
_, widget = viewer.window.add_plugin_dock_widget("napari-s2s", "S2S-ST imputation")
QApplication.processEvents()
t1 = time.perf_counter()
viewer.open(path, plugin="napari-s2s")
QApplication.processEvents()
t2 = time.perf_counter()
box = widget.genes_box if hasattr(widget, "genes_box") else widget  # the dock's boxes (older code: one widget)
box.top_n_spin.setValue(10)
box.use_top_genes()
QApplication.processEvents()
viewer.reset_view()
viewer.screenshot(canvas_only=True, flash=False)
t3 = time.perf_counter()
stack = [l for l in viewer.layers if l.data.ndim == 3 and not getattr(l, "rgb", False)][-1]
draws = []
for i in range(min(10, stack.data.shape[0])):
    s = time.perf_counter()
    viewer.dims.set_current_step(0, i)
    viewer.screenshot(canvas_only=True, flash=False)
    draws.append(time.perf_counter() - s)
print("RESULT " + json.dumps({
    "viewer_ready_s": t1 - t0, "open_s": t2 - t1, "ten_genes_s": t3 - t2, "total_s": t3 - t0,
    "genes_shown": int(stack.data.shape[0]), "layer_shape": list(stack.data.shape),
    "draw_median_s": sorted(draws)[len(draws) // 2], "draw_max_s": max(draws),
}))
viewer.close()
"""


def generate(args) -> None:
    from napari_s2s.core.data.synthetic_hd import write_visium_hd

    DATA.mkdir(parents=True, exist_ok=True)
    names = args.slides.split(",") if args.slides else list(SLIDES)
    for name in names:
        bins, um, genes, density = SLIDES[name]
        t = time.perf_counter()
        folder = write_visium_hd(
            DATA / name, n_bins=bins, bin_um=um, n_genes=genes, density=density, csv_positions=True
        )
        print(f"{folder}: {time.perf_counter() - t:.0f} s", file=sys.stderr)


def _measure(cmd: list[str], env: dict, timeout: float = 1800) -> dict:
    """Run ``cmd``; its wall time, peak resident memory (GB) and output (killed above the cap)."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[tuple[float, str]] = []
    out: list[str] = []
    killed = []

    def read_err():
        for line in proc.stderr:
            lines.append((time.perf_counter() - t0, line.rstrip()))

    def read_out():
        out.append(proc.stdout.read())

    def watch():
        p = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                if p.memory_info().rss > MEMORY_CAP_GB * 1e9:
                    killed.append(True)
                    proc.kill()
            except psutil.Error:
                pass
            time.sleep(0.5)

    threads = [threading.Thread(target=f, daemon=True) for f in (read_err, read_out, watch)]
    for th in threads:
        th.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    for th in threads[:2]:
        th.join(timeout=10)
    return {
        "returncode": proc.returncode,
        "seconds": round(wall, 2),
        "peak_gb": round(usage.ru_maxrss / 1e6, 3),  # ru_maxrss is in kB on Linux
        "killed_above_cap": bool(killed),
        "stderr": lines,
        "stdout": "".join(out),
    }


def _code_env(src: Path | None) -> dict:
    env = dict(os.environ)
    env["PYTHONWARNINGS"] = "ignore"
    env["NAPARI_S2S_CONFIG_DIR"] = tempfile.mkdtemp(prefix="s2s_cfg_")
    if src is not None:
        env["PYTHONPATH"] = str(src) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _unpack(ref: str) -> Path:
    dest = Path(tempfile.mkdtemp(prefix="s2s_before_"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "src"


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "napari_s2s.cli", *map(str, args)]


def run(args) -> None:
    before_ref = (
        args.before_ref
        or subprocess.run(
            ["git", "-C", str(ROOT), "merge-base", "HEAD", "main"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    codes = {"after": None}
    if not args.no_before:
        codes["before"] = _unpack(before_ref)
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    commits = {"after": head, "before": before_ref[:10]}
    stem = args.name
    path = RESULTS / f"{stem}.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    record["machine"] = f"{platform.node()} ({os.cpu_count()} CPU cores, shared with other jobs)"
    record["slides"] = {n: {"bins": b, "bin_um": u, "genes": g, "density": d} for n, (b, u, g, d) in SLIDES.items()}
    old_runs = record.get("runs", [])
    for r in old_runs:  # rows of records written before rows carried their commit
        r.setdefault("commit", record.get(f"{r['code']}_commit"))
    record.pop("after_commit", None)
    record.pop("before_commit", None)
    only = set(args.only.split(",")) if args.only else {"info", "viewer", "impute"}
    needed = set(SLIDES) if only & {"info", "viewer"} else {"hd_016um"}
    for name in needed:
        folder = DATA / name / "outs" / "binned_outputs" / f"square_{int(SLIDES[name][1]):03d}um"
        if not folder.is_dir():
            sys.exit(f"{folder} is missing: run `python benchmarks/real_size.py generate` first")
    new_runs = []
    jobs = []
    for name in SLIDES:
        folder = DATA / name / "outs" / "binned_outputs" / f"square_{int(SLIDES[name][1]):03d}um"
        if "info" in only:
            jobs.append(("info", name, lambda f=folder: _cli("info", f, "--json")))
        if "viewer" in only:
            jobs.append(("viewer (10 genes)", name, lambda f=folder: [sys.executable, "-c", VIEWER_CHILD, str(f)]))
    if "impute" in only:
        f16 = DATA / "hd_016um" / "outs" / "binned_outputs" / "square_016um"
        for variant in args.impute_variants.split(","):
            extra = IMPUTE_VARIANTS[variant]
            out = Path(tempfile.mkdtemp(prefix="s2s_out_")) / "imputed.h5ad"
            label = "impute (10 genes, fast, 120 s" + (f", {' '.join(extra)})" if extra else ")")
            jobs.append(
                (
                    label,
                    "hd_016um",
                    lambda f=f16, o=out, e=extra: _cli(
                        "impute",
                        f,
                        "--out",
                        o,
                        "--genes",
                        "top:10",
                        "--preset",
                        "fast",
                        "--budget",
                        "120",
                        "--device",
                        "cpu",
                        "--seed",
                        "0",
                        *e,
                    ),
                )
            )
    impute_codes = {k: v for k, v in codes.items() if k in args.impute_codes.split(",")}
    for what, name, cmd in jobs:
        for code, src in (impute_codes if what.startswith("impute") else codes).items():
            print(f"{what} {name} {code} ...", file=sys.stderr, flush=True)
            load = os.getloadavg()[0]
            res = _measure(cmd(), _code_env(src))
            row = {
                "what": what,
                "slide": name,
                "code": code,
                "commit": commits[code],
                "load_before": round(load, 2),
                **{k: res[k] for k in ("returncode", "seconds", "peak_gb", "killed_above_cap")},
            }
            if what.startswith("viewer") and "RESULT " in res["stdout"]:
                row.update(json.loads(res["stdout"].split("RESULT ", 1)[1].splitlines()[0]))
            if what.startswith("info") and res["returncode"] == 0:
                info = json.loads(res["stdout"])
                row["info"] = {
                    k: info.get(k)
                    for k in (
                        "spots_total",
                        "spots_in_tissue",
                        "genes",
                        "lattice",
                        "pitch_um",
                        "um_per_px",
                        "technology",
                    )
                }
            if what.startswith("impute"):
                done = [t for t, line in res["stderr"] if "trained:" in line or "stopped:" in line]
                wrote = [t for t, line in res["stderr"] if "wrote" in line]
                row["training_done_s"] = round(done[0], 1) if done else None
                row["final_maps_s"] = round(wrote[0], 1) if wrote else None
                row["after_training_s"] = round(wrote[0] - done[0], 1) if done and wrote else None
                row["steps_line"] = next((line for _, line in res["stderr"] if "trained:" in line), None)
            if res["returncode"] != 0:
                row["error"] = "\n".join(line for _, line in res["stderr"][-3:])
            print(json.dumps(row), file=sys.stderr, flush=True)
            new_runs.append(row)
    measured = {(r["what"], r["slide"], r["code"]) for r in new_runs}
    record["runs"] = [r for r in old_runs if (r["what"], r["slide"], r["code"]) not in measured] + new_runs
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(record))
    print(markdown(record))


def markdown(record: dict) -> str:
    lines = [
        "# Real-size benchmark (generated Visium HD slides, 18 k genes)",
        "",
        "Command: `python benchmarks/real_size.py run` (see its docstring; the viewer rows under xvfb-run). "
        'Code: the commit measured ("before": where the branch left main). '
        f"{record['machine']}: seconds vary with the load average noted, memory does not.",
        "",
        "| what | slide | code | seconds | peak memory (GB) | notes |",
        "|---|---|---|---:|---:|---|",
    ]
    for r in record["runs"]:
        notes = []
        if r.get("returncode"):
            notes.append(
                "failed"
                + (" (killed above the memory cap)" if r.get("killed_above_cap") else "")
                + (f": {r['error'].splitlines()[-1][:120]}" if r.get("error") else "")
            )
        if r.get("info"):
            i = r["info"]
            notes.append(
                f"read as {i.get('technology')}, {i.get('spots_in_tissue'):,} bins, pitch {i.get('pitch_um')} um, "
                f"{i.get('um_per_px')} um/px"
            )
        if "open_s" in r:
            notes.append(
                f"open {r['open_s']:.1f} s, 10 genes {r['ten_genes_s']:.1f} s, redraw on gene change "
                f"median {r['draw_median_s'] * 1000:.0f} ms (max {r['draw_max_s'] * 1000:.0f} ms), "
                f"layer {r['layer_shape']}"
            )
        if r.get("final_maps_s") is not None:
            notes.append(
                f"training ended at {r['training_done_s']} s, final maps written at {r['final_maps_s']} s "
                f"({r['after_training_s']} s after training); {r.get('steps_line') or ''}".strip()
            )
        notes.append(f"load {r['load_before']}")
        lines.append(
            f"| {r['what']} | {r['slide']} | {r['code']} {r.get('commit') or record.get(r['code'] + '_commit') or ''} | {r['seconds']:.1f} | {r['peak_gb']:.2f} | "
            f"{'; '.join(notes)} |"
        )
    for note in record.get("notes", []):
        lines += ["", note]
    lines += [
        "",
        "Slides: "
        + "; ".join(
            f"{n}: {s['bins']:,} bins x {s['genes']:,} genes at {s['bin_um']:g} um, {s['density']:.0%} non-zero"
            for n, s in record["slides"].items()
        ),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    gen = sub.add_parser("generate")
    gen.add_argument("--slides", default=None, help=f"{','.join(SLIDES)} (default: all)")
    rep = sub.add_parser("report", help="rewrite results/NAME.md from results/NAME.json")
    rep.add_argument("--name", default="real_size")
    rep.add_argument("--note", action="append", default=[], help="add a note under the table (kept in the JSON)")
    r = sub.add_parser("run")
    r.add_argument("--before-ref", default=None, help="git ref of the 'before' code (default: merge-base with main)")
    r.add_argument("--no-before", action="store_true", help="measure this tree only")
    r.add_argument("--only", default=None, help="info,viewer,impute (default: all)")
    r.add_argument("--name", default="real_size", help="result file stem")
    r.add_argument("--impute-variants", default="default", help=f"{','.join(IMPUTE_VARIANTS)} (default: default)")
    r.add_argument("--impute-codes", default="after,before", help="codes that run impute (default: after,before)")
    args = p.parse_args()
    if args.cmd == "generate":
        generate(args)
    elif args.cmd == "report":
        record = json.loads((RESULTS / f"{args.name}.json").read_text())
        if args.note:
            record["notes"] = record.get("notes", []) + args.note
            (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=1) + "\n")
        (RESULTS / f"{args.name}.md").write_text(markdown(record))
    else:
        run(args)


if __name__ == "__main__":
    main()
