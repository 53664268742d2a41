"""Make the README screenshots from the real widget on a real slide (run under Xvfb).

    xvfb-run -a -s "-screen 0 1700x1100x24" python docs/screenshots/make_screenshots.py \
        --slide ../shared/data/visium_mouse_brain --budget 40 --he-slide ../shared/data/her2st_C2.h5ad

Writes ``docs/screenshots/{open,training,side_by_side,validation,review_result}.png`` (and
``validation_he.png`` with ``--he-slide``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--slide", required=True)
    p.add_argument("--budget", type=float, default=40.0)
    p.add_argument("--genes", default="")
    p.add_argument("--out", default=str(HERE))
    p.add_argument("--he-slide", default="", help="a slide with an H&E image for validation_he.png (gaussian vs he_gaussian)")
    args = p.parse_args()
    os.environ.setdefault("NAPARI_S2S_CONFIG_DIR", tempfile.mkdtemp(prefix="s2s-shots-"))
    os.environ.pop("NAPARI_S2S_SYNC", None)
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_s2s.gui.widget import S2SWidget

    out = Path(args.out)
    app = QApplication.instance() or QApplication([])
    viewer = napari.Viewer(title="napari-s2s", show=True)
    viewer.window.resize(1600, 1000)
    widget = S2SWidget(viewer)
    viewer.window.add_dock_widget(widget, name="S2S-ST imputation")

    def pump(seconds: float = 0.3) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.01)

    def shot(name: str) -> None:
        pump(0.5)
        viewer.screenshot(str(out / f"{name}.png"), canvas_only=False, flash=False)
        print(out / f"{name}.png")

    viewer.open(args.slide, plugin="napari-s2s")
    if args.genes:
        widget.apply_gene_list(args.genes)
    widget.settings_box.device_combo.setCurrentIndex(widget.settings_box.device_combo.findData("cpu"))
    widget.settings_box.budget_spin.setValue(args.budget)
    shot("open")

    widget.start_training()
    widget.scroll_to(widget.train_box.loss_plot)
    while widget.running and widget.state.elapsed_s < 0.8 * args.budget:
        pump(0.2)
    shot("training")
    while widget.running:
        pump(0.2)
    widget.viewer.dims.set_current_step(0, 0)
    widget.results_box.side_by_side_check.setChecked(True)
    shot("side_by_side")
    widget.results_box.side_by_side_check.setChecked(False)

    widget.train_box.method_combo.setCurrentText("s2s" if widget.train_box.method_combo.findText("s2s") >= 0 else "gaussian")
    widget.start_validation()
    while widget.running:
        pump(0.2)
    genes = widget.selected_genes()
    widget.set_review(genes[0], status="accepted", comment="matches the anatomy")
    if len(genes) > 1:
        widget.set_review(genes[1], status="flagged", comment="check the edge")
    widget.scroll_to(widget.review_table)
    shot("validation")
    saved = widget.save_results(Path(tempfile.mkdtemp(prefix="s2s-shots-")) / f"{widget.current_slide().name}_s2s.h5ad")
    viewer.close()

    # a pathologist's session: the saved result reopened, measured spots marked, genes reviewed
    viewer = napari.Viewer(title="napari-s2s", show=True)
    viewer.window.resize(1600, 1000)
    widget = S2SWidget(viewer)
    viewer.window.add_dock_widget(widget, name="S2S-ST imputation")
    viewer.open(saved, plugin="napari-s2s")
    for layer in viewer.layers:
        if layer.name.endswith("measured spots"):
            layer.visible = True
    genes = widget.selected_genes()
    widget.set_review(genes[0], status="accepted", comment="white matter tracts as expected")
    if len(genes) > 2:
        widget.set_review(genes[2], status="flagged", comment="edge of the section")
    widget.scroll_to(widget.review_table)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.zoom *= 1.6
    shot("review_result")
    viewer.close()
    if args.he_slide:
        viewer = napari.Viewer(title="napari-s2s", show=True)
        viewer.window.resize(1600, 1000)
        widget = S2SWidget(viewer)
        viewer.window.add_dock_widget(widget, name="S2S-ST imputation")
        viewer.open(args.he_slide, plugin="napari-s2s")
        widget.settings_box.histology_combo.setCurrentIndex(widget.settings_box.histology_combo.findData("auto"))
        widget.train_box.method_combo.setCurrentText("gaussian")
        widget.start_validation()
        while widget.running:
            pump(0.2)
        widget.scroll_to(widget.review_table)
        shot("validation_he")
        viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
