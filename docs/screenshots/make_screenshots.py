"""Make the README screenshots from the real dock on a real slide, at a desktop and a laptop size.

The dock is added as users get it (napari's plugin dock contribution). Run under Xvfb with a screen at
least as large as the largest size::

    xvfb-run -a -s "-screen 0 1920x1080x24" python docs/screenshots/make_screenshots.py \
        --slide ../shared/data/visium_mouse_brain --budget 40 --he-slide ../shared/data/her2st_C2.h5ad

Writes ``{open,training,side_by_side,validation,review_result,validation_he}.png`` at 1920x1080 in
``docs/screenshots/`` and at 1366x768 in ``docs/screenshots/laptop/``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Window size -> output folder.
SIZES = {(1920, 1080): HERE, (1366, 768): HERE / "laptop"}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--slide", required=True)
    p.add_argument("--budget", type=float, default=40.0)
    p.add_argument("--genes", default="")
    p.add_argument(
        "--he-slide", default="", help="a slide with an H&E image for validation_he.png (gaussian vs he_gaussian)"
    )
    p.add_argument("--size", action="append", default=None, help="WxH (repeatable; default: 1920x1080 and 1366x768)")
    args = p.parse_args()
    os.environ.setdefault("NAPARI_S2S_CONFIG_DIR", tempfile.mkdtemp(prefix="s2s-shots-"))
    os.environ.pop("NAPARI_S2S_SYNC", None)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.size] if args.size else list(SIZES)
    for size in sizes:
        out = SIZES.get(size, HERE / f"{size[0]}x{size[1]}")
        out.mkdir(parents=True, exist_ok=True)
        shots(args, size, out)
    return 0


def shots(args, size: tuple[int, int], out: Path) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])

    def pump(seconds: float = 0.3, rounds: int = 20) -> None:
        # at least ``rounds`` passes: one pass can take the whole time (the final maps shown), and
        # the layout requests it posts must be handled before a screenshot
        end = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < end or n < rounds:
            app.processEvents()
            time.sleep(0.01)
            n += 1

    def open_dock():
        viewer = napari.Viewer(title="napari-s2s", show=True)
        viewer.window.resize(*size)
        pump(0.5)
        _, widget = viewer.window.add_plugin_dock_widget("napari-s2s", "S2S-ST imputation")
        pump(0.5)
        return viewer, widget

    def shot(viewer, name: str) -> None:
        pump(0.8)
        viewer.screenshot(str(out / f"{name}.png"), canvas_only=False, flash=False)
        print(out / f"{name}.png", flush=True)

    def wait_run(widget) -> None:
        while widget.running:
            pump(0.2)
        pump(0.5)  # the done line and the final maps, laid out

    viewer, widget = open_dock()
    viewer.open(args.slide, plugin="napari-s2s")
    if args.genes:
        widget.apply_gene_list(args.genes)
    devices = widget.settings_box.device_combo
    devices.setCurrentIndex(devices.findData("cpu"))
    widget.settings_box.budget_spin.setValue(args.budget)
    shot(viewer, "open")

    widget.start_training()
    while widget.running and (widget.previews_shown < 1 or widget.state.elapsed_s < 0.5 * args.budget):
        pump(0.2)
    shot(viewer, "training")
    wait_run(widget)
    viewer.dims.set_current_step(0, 0)
    widget.results_box.side_by_side_check.setChecked(True)
    shot(viewer, "side_by_side")
    widget.results_box.side_by_side_check.setChecked(False)

    widget.train_box.method_combo.setCurrentText("s2s")
    widget.start_validation()
    wait_run(widget)
    genes = widget.selected_genes()
    widget.set_review(genes[0], status="accepted", comment="matches the anatomy")
    if len(genes) > 1:
        widget.set_review(genes[1], status="flagged", comment="check the edge")
    widget.review_table.setCurrentCell(0, 0)
    shot(viewer, "validation")
    slide_name = widget.current_slide().name
    saved = widget.save_results(Path(tempfile.mkdtemp(prefix="s2s-shots-")) / f"{slide_name}_s2s.h5ad")
    viewer.close()

    # a pathologist's session: the saved result reopened, measured spots marked, genes reviewed
    viewer, widget = open_dock()
    viewer.open(saved, plugin="napari-s2s")
    from napari_s2s.gui.layers import s2s_meta

    for layer in viewer.layers:
        if (s2s_meta(layer) or {}).get("kind") == "spots":
            layer.visible = True
    genes = widget.selected_genes()
    widget.set_review(genes[0], status="accepted", comment="white matter tracts as expected")
    if len(genes) > 2:
        widget.set_review(genes[2], status="flagged", comment="edge of the section: signal outside the tissue")
    widget.review_table.setCurrentCell(2 if len(genes) > 2 else 0, 0)
    viewer.scene.camera.zoom *= 1.6
    shot(viewer, "review_result")
    viewer.close()
    if args.he_slide:
        viewer, widget = open_dock()
        viewer.open(args.he_slide, plugin="napari-s2s")
        widget.settings_box.histology_combo.setCurrentIndex(widget.settings_box.histology_combo.findData("auto"))
        widget.train_box.method_combo.setCurrentText("gaussian")
        widget.start_validation()
        wait_run(widget)
        widget.review_table.setCurrentCell(0, 0)
        shot(viewer, "validation_he")
        viewer.close()


if __name__ == "__main__":
    raise SystemExit(main())
