"""How responsive the napari viewer stays while the S2S widget trains (and how soon maps appear).

Opens a real viewer with the S2S dock widget, loads a slide, clicks Train, and records every tick
of a 10 ms ``QTimer`` on the Qt event loop until the imputed maps are on screen. The gap between
two ticks minus the 10 ms period is how long the event loop could not run (a "stall"). Reported
per phase (prepare, train, impute, showing the maps), with the time from clicking Train to the
first imputed map.

Run under a display (``xvfb-run -a -s "-screen 0 1700x1100x24"`` on a machine without one)::

    python benchmarks/gui_responsiveness.py --slide sample --budget 20 --out benchmarks/results/gui_responsiveness.md
    python benchmarks/gui_responsiveness.py --slide ../shared/data/visium_mouse_brain --budget 20 --append ...
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PERIOD_MS = 10
#: Seconds of ticks recorded before clicking Train (the machine's baseline stalls).
IDLE_S = 3.0


def measure(slide_arg: str, budget: float, n_genes: int, first_map_budget: float) -> dict:
    os.environ.setdefault("NAPARI_S2S_CONFIG_DIR", tempfile.mkdtemp(prefix="s2s-bench-config-"))
    os.environ.pop("NAPARI_S2S_SYNC", None)
    import napari
    from qtpy.QtCore import QEventLoop, Qt, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_s2s.core.data.io import read_slide
    from napari_s2s.core.data.synthetic import make_synthetic_slide
    from napari_s2s.gui.layers import slide_layers
    from napari_s2s.gui.widget import S2SWidget

    slide = make_synthetic_slide() if slide_arg == "sample" else read_slide(slide_arg)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    widget = S2SWidget(viewer)
    viewer.window.add_dock_widget(widget, name="S2S-ST")
    for data, kwargs, _ in slide_layers(slide):
        viewer.add_image(data, **kwargs)
    widget.genes_box.top_n_spin.setValue(n_genes)
    widget.use_top_genes()
    widget.settings_box.device_combo.setCurrentIndex(widget.settings_box.device_combo.findData("cpu"))
    app = QApplication.instance()
    settle = time.perf_counter() + 3.0  # let the viewer finish its first paints
    while time.perf_counter() < settle:
        app.processEvents()
        time.sleep(0.02)

    def run_once(budget_s: float) -> dict:
        ticks: list[tuple[float, str]] = []
        messages: list[str] = []
        marks: dict[str, float] = {}
        loop = QEventLoop()

        def tick():
            now = time.perf_counter()
            if "click" in marks and "click_tick" not in marks:
                marks["click_tick"] = len(ticks)  # the gap ending here holds the click handler
            ticks.append((now, widget.state.phase if "click" in marks else "idle"))
            messages.append(widget.state.message)
            if "click" not in marks and now - ticks[0][0] >= IDLE_S:
                marks["click"] = now
                widget.train_box.train_button.click()  # the user's click, inside the event loop
            elif "click" in marks and "done" not in marks:
                if (not widget.running and widget.imputed_layer() is not None) or now > deadline:
                    marks["done"] = now
            elif "done" in marks and now - marks["done"] >= 1.0:  # the maps get drawn meanwhile
                loop.quit()

        widget.settings_box.budget_spin.setValue(budget_s)
        old = widget.imputed_layer()
        if old is not None:
            viewer.layers.remove(old)
        deadline = time.perf_counter() + IDLE_S + budget_s * 4 + 120
        timer = QTimer()
        timer.setInterval(PERIOD_MS)
        timer.setTimerType(Qt.TimerType.PreciseTimer)
        timer.timeout.connect(tick)
        timer.start()
        loop.exec()
        timer.stop()
        t = np.array([x for x, _ in ticks])
        phases = [p for _, p in ticks[1:]]
        phases[marks["click_tick"] - 1] = "click"  # the Train handler itself (before the worker runs)
        gaps_ms = np.diff(t) * 1000.0 - PERIOD_MS
        per_phase: dict[str, dict] = {}
        for ph in dict.fromkeys(phases):
            g = gaps_ms[[p == ph for p in phases]]
            per_phase[ph] = {
                "ticks": int(g.size),
                "seconds": round(float(np.sum(g + PERIOD_MS)) / 1000.0, 2),
                "max_stall_ms": round(float(g.max()), 1),
                "p99_stall_ms": round(float(np.percentile(g, 99)), 1),
                "median_gap_ms": round(float(np.median(g + PERIOD_MS)), 1),
                "worst_after": messages[1:][int(np.flatnonzero([p == ph for p in phases])[np.argmax(g)])],
            }
        running = np.array([p in ("starting", "prepare", "train", "impute") for p in phases])  # not "click"
        idle = np.array([p == "idle" for p in phases])
        return {
            "budget_s": budget_s,
            "click_to_first_map_s": round(widget.first_map_s or float("nan"), 2),
            "click_to_final_map_s": round(widget.final_map_s or float("nan"), 2),
            "previews": int(widget.previews_shown),
            "click_stall_ms": round(float(gaps_ms[marks["click_tick"] - 1]), 1),
            "steps": int(max((s for s, _ in widget.state.losses), default=0)),
            "training_max_stall_ms": round(float(gaps_ms[running].max()), 1) if running.any() else None,
            "training_p99_stall_ms": round(float(np.percentile(gaps_ms[running], 99)), 1) if running.any() else None,
            "overall_max_stall_ms": round(float(gaps_ms.max()), 1),
            "idle_max_stall_ms": round(float(gaps_ms[idle].max()), 1),
            "idle_p99_stall_ms": round(float(np.percentile(gaps_ms[idle], 99)), 1),
            "per_phase": per_phase,
        }

    first = run_once(first_map_budget)
    long = run_once(budget)
    out = {
        "slide": slide.name,
        "spots": int(slide.usable().sum()),
        "lattice": slide.kind,
        "genes": len(widget.selected_genes()),
        "preset": widget.settings_box.preset_combo.currentText(),
        "device": "cpu",
        "torch_threads": None,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "first_map_run": first,
        "long_run": long,
    }
    from napari_s2s.gui.training import torch_threads

    out["torch_threads"] = torch_threads()
    viewer.close()
    return out


def markdown(results: list[dict]) -> str:
    lines = [
        "# GUI responsiveness while training (napari-s2s dock widget)",
        "",
        "Produced by `benchmarks/gui_responsiveness.py` (command lines below): a real napari viewer with the",
        f"S2S dock widget; a {PERIOD_MS} ms `QTimer` on the Qt event loop records its ticks from clicking Train",
        "until one second after the final imputed maps are shown. *Stall* = gap between ticks minus the period",
        "(how long the event loop could not run). *Click* = the Train button's handler (it adds the run's",
        "measured stack and an empty imputed stack, so that no layer is added while training runs).",
        "*Training* = phases starting/prepare/train/impute: the worker thread runs; the GUI thread applies",
        "progress events and fills the imputed layer in place with each preview map. *Done* = the final maps",
        "written into the same layer. *First map* = the first preview (after ~2 s of training, no test-time",
        "averaging); *final map* = the maps of the trained model (test-time averaged).",
        "",
        "| slide | spots | genes | budget (s) | steps | previews | click -> first map (s) | click -> final map (s) | max stall idle, before Train (ms) | stall of the click handler (ms) | max stall while training (ms) | p99 stall while training (ms) | max stall showing the final maps (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for key in ("first_map_run", "long_run"):
            run = r[key]
            done = max((v["max_stall_ms"] for ph, v in run["per_phase"].items() if ph in ("done", "stopped")), default=None)
            lines.append(
                f"| {r['slide']} ({r['lattice']}) | {r['spots']} | {r['genes']} | {run['budget_s']:g} | {run['steps']} | {run.get('previews')} | "
                f"{run['click_to_first_map_s']} | {run.get('click_to_final_map_s')} | {run['idle_max_stall_ms']} | "
                f"{run.get('click_stall_ms')} | {run['training_max_stall_ms']} | {run['training_p99_stall_ms']} | {done} |"
            )
    lines += [
        "",
        "Click -> final map = prepare + train (the budget, previews not charged to it) + impute (worker",
        "thread) + showing the maps (GUI thread); the per-phase seconds below say where the time goes.",
        "",
        "Per phase (seconds spent in it; stalls):",
        "",
    ]
    for r in results:
        for key in ("first_map_run", "long_run"):
            lines.append(f"- {r['slide']}, budget {r[key]['budget_s']:g} s: " + "; ".join(
                f"{ph} {v['seconds']} s: max stall {v['max_stall_ms']} ms, p99 {v['p99_stall_ms']} ms"
                for ph, v in r[key]["per_phase"].items()
            ))
    r0 = results[0]
    lines += [
        "",
        f"Machine: {r0['cpu_count']} CPU cores (shared with other jobs while measured), CPU only, "
        f"torch threads in the worker: {r0['torch_threads']}, preset `{r0['preset']}`, Python {r0['python']}, "
        "Xvfb + Mesa software OpenGL.",
        "",
        "Raw numbers: `benchmarks/results/gui_responsiveness.json`.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slide", action="append", default=None, help="'sample' or a slide path (repeatable)")
    p.add_argument("--budget", type=float, default=20.0, help="training budget of the long run (s)")
    p.add_argument("--first-map-budget", type=float, default=2.0, help="budget of the click-to-first-map run (s)")
    p.add_argument("--genes", type=int, default=8)
    p.add_argument("--out", default="benchmarks/results/gui_responsiveness.md")
    p.add_argument("--from-json", default=None, help="re-render the Markdown of an earlier run's JSON")
    args = p.parse_args(argv)
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        old = Path(args.out).read_text() if Path(args.out).is_file() else ""
        cmd_line = next((ln for ln in old.splitlines() if ln.startswith("Command: ")), "")
        Path(args.out).write_text(markdown(results) + (f"\n{cmd_line}\n" if cmd_line else ""))
        return 0
    results = [measure(s, args.budget, args.genes, args.first_map_budget) for s in (args.slide or ["sample"])]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(results)
    cmd = "python benchmarks/gui_responsiveness.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text += f"\nCommand: `xvfb-run -a -s \"-screen 0 1700x1100x24\" {cmd}`\n"
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
