"""The dock as a pathologist meets it (issue 14), driven the way users get it: napari's plugin dock
contribution (``add_plugin_dock_widget``: the widget's viewer is napari's public proxy), under Xvfb.

Review that cannot mislead (typing a comment, the map shown for the current row, the error map after
Validate, a review CSV on its own saved result), Stop and close that end the work, and a layout
that fits a laptop screen.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLineEdit

from napari_s2s.gui.layers import s2s_meta, slide_layers
from napari_s2s.gui.review_panel import COMMENT_COL

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def saved_result(tmp_path_factory, data_dir, tiny_config):
    """``(path, genes)``: a result of HER2ST C2 saved by the engine (a tiny model, 2 steps), as
    ``napari-s2s impute`` writes it, named ``her2st_C2_s2s.h5ad``."""
    from napari_s2s.core.data.io import read_slide
    from napari_s2s.core.s2s.engine import S2SImputer
    from napari_s2s.core.s2s.results import write_imputed

    slide = read_slide(data_dir / "her2st_C2.h5ad")
    genes = slide.top_variable_genes(4)
    cfg = tiny_config(max_steps=2)
    res = S2SImputer(cfg).fit(slide, genes).impute(slide)
    path = write_imputed(res.to_anndata(slide, cfg, 1.0), tmp_path_factory.mktemp("result") / "her2st_C2_s2s.h5ad")
    return Path(path), genes


@pytest.fixture
def notes(monkeypatch):
    """Notifications the dock shows, as ``(kind, message)``."""
    seen = []
    monkeypatch.setattr("napari_s2s.gui.messages.notify", lambda kind, msg: seen.append((kind, msg)))
    return seen


def _kind(viewer, kind):
    return [layer for layer in viewer.layers if (s2s_meta(layer) or {}).get("kind") == kind]


def _open_synthetic(widget, slide, n_genes=3, budget=None):
    """The slide's layers in the viewer, its top genes picked; with ``budget``, that budget on the CPU."""
    for data, kwargs, _ in slide_layers(slide):
        widget.viewer.add_image(data, **kwargs)
    widget.set_genes(slide.top_variable_genes(n_genes))
    if budget is not None:
        widget.settings_box.budget_spin.setValue(budget)
        widget.settings_box.device_combo.setCurrentIndex(widget.settings_box.device_combo.findData("cpu"))


# ---------------------------------------------------------------------- defect 1: typing a comment
def test_typing_in_a_comment_cell_writes_the_comment_and_reviews_nothing(plugin_dock, saved_result, qtbot):
    path, genes = saved_result
    widget = plugin_dock()
    widget.viewer.open(str(path), plugin="napari-s2s")
    t = widget.review_table
    assert t.rowCount() == len(genes)
    t.setFocus()
    t.setCurrentCell(0, COMMENT_COL)
    qtbot.keyClick(t, Qt.Key.Key_F)  # "f" of "faint signal": starts editing the cell, is not "flag"
    editor = t.viewport().findChild(QLineEdit)
    assert editor is not None, "typing in a Comment cell did not start editing it"
    qtbot.keyClicks(editor, "aint signal")
    qtbot.keyClick(editor, Qt.Key.Key_Return)  # Qt commits it from the event loop
    qtbot.waitUntil(lambda: t.state() != t.State.EditingState, timeout=2000)
    rows = widget.review.rows
    assert rows[genes[0]].comment == "faint signal"
    assert all(r.status == "" for r in rows.values()), {g: r.status for g, r in rows.items()}
    assert t.currentRow() == 0
    # the comment field under the table (readable at any dock width): its keys never review either
    t.setCurrentCell(1, 0)
    assert widget.review_panel.comment_edit.isEnabled()
    qtbot.keyClicks(widget.review_panel.comment_edit, "fine, a few false positives")
    qtbot.keyClick(widget.review_panel.comment_edit, Qt.Key.Key_Return)
    assert rows[genes[1]].comment == "fine, a few false positives" and rows[genes[1]].status == ""
    assert t.item(1, COMMENT_COL).text() == "fine, a few false positives"
    # where no cell editor would take them, the keys still review: A on the Gene column
    t.setCurrentCell(2, 0)
    qtbot.keyClick(t, Qt.Key.Key_A)
    assert rows[genes[2]].status == "accepted" and t.currentRow() == 3


# ---------------------------------------------------------------------- defect 2: the map shown is the row's gene
def test_the_map_shown_is_the_current_rows_gene_whatever_layer_is_active(plugin_dock, saved_result, qtbot):
    path, genes = saved_result
    widget = plugin_dock()
    viewer = widget.viewer
    viewer.open(str(path), plugin="napari-s2s")
    t = widget.review_table
    kinds = [(s2s_meta(layer) or {}).get("kind") for layer in viewer.layers]
    assert "spots" in kinds and "he" in kinds  # the reader's layers: H&E, the saved stack, the spot rings
    (stack,) = [x for x in viewer.layers if (s2s_meta(x) or {}).get("saved_result")]
    assert stack.visible

    def on_screen():  # the gene of the saved stack's plane the canvas shows
        return s2s_meta(stack)["genes"][int(viewer.dims.current_step[0])]

    t.setFocus()
    for layer in list(viewer.layers):
        viewer.layers.selection.active = layer
        for row in (2, 0, 3, 1):
            t.setCurrentCell(row, 0)
            assert on_screen() == genes[row], (layer.name, row)
            assert viewer.canvas.overlays.text.text == genes[row]
        # reviewing by key: the gene accepted is the gene that was on screen
        t.setCurrentCell(2, 0)
        shown = on_screen()
        qtbot.keyClick(t, Qt.Key.Key_A)
        assert widget.review.rows[shown].status == "accepted"
        assert on_screen() == genes[3]  # the next row's map follows
        widget.set_review(shown, status="")


# ---------------------------------------------------------------------- defect 3: the error map after Validate
def test_validate_through_the_plugin_dock_shows_the_error_map(plugin_dock, synthetic_slide, monkeypatch):
    from napari_s2s.gui.gene_display import GENE_KINDS

    monkeypatch.setenv("NAPARI_S2S_SYNC", "1")
    widget = plugin_dock()
    viewer = widget.viewer
    assert type(viewer).__name__.endswith("Proxy")  # the way users get it
    _open_synthetic(widget, synthetic_slide)
    widget.train_box.method_combo.setCurrentText("gaussian")
    widget.start_validation()
    assert widget.state.phase == "done", widget.state.message
    (err,) = _kind(viewer, "error")
    assert err.visible, "the error map hid itself: the first thing Validate showed was an empty H&E"
    assert viewer.layers.selection.active == err
    others = [x for x in viewer.layers if (s2s_meta(x) or {}).get("kind") in GENE_KINDS and x != err]
    assert others and not any(x.visible for x in others)  # the error map alone over the H&E
    # which colour is which: a colour bar and a name that says it (PiYG of prediction minus truth)
    assert err.colorbar.visible and str(err.colormap.name) == "PiYG"
    assert "green over-" in err.name and "pink under-" in err.name and "gaussian" in err.name


# ---------------------------------------------------------------------- defect 4: Stop and close end validation work
def test_stop_during_validate_ends_its_computation(plugin_dock, synthetic_slide, qtbot):
    widget = plugin_dock()
    _open_synthetic(widget, synthetic_slide, budget=120)
    widget.train_box.method_combo.setCurrentText("s2s")
    widget.start_validation()
    job = widget._runner.job
    qtbot.waitUntil(lambda: widget.state.phase == "validate" and widget.state.elapsed_s > 3.0, timeout=60000)
    t_stop = time.perf_counter()
    qtbot.mouseClick(widget.train_box.stop_button, Qt.MouseButton.LeftButton)
    assert widget.state.phase == "stopping" and not widget.train_box.stop_button.isEnabled()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    # the panel says it stopped once the work has ended, not before: the method's thread is gone
    assert job.wait(0), "the validation thread still computes after the panel said it stopped"
    assert time.perf_counter() - t_stop < 60, "stopping took as long as the 120 s budget"
    assert widget.state.phase == "stopped" and widget.last_validation is None
    assert widget.train_box.train_button.isEnabled()


_CLOSE_SCRIPT = textwrap.dedent("""
    import sys, time
    import napari
    from qtpy.QtWidgets import QApplication
    from napari_s2s.core.data.synthetic import make_synthetic_slide
    from napari_s2s.gui.layers import slide_layers

    viewer = napari.Viewer(show=False)
    _, w = viewer.window.add_plugin_dock_widget("napari-s2s", "S2S-ST imputation")
    for data, kwargs, _ in slide_layers(make_synthetic_slide()):
        viewer.add_image(data, **kwargs)
    w.settings_box.budget_spin.setValue(120)
    w.settings_box.device_combo.setCurrentIndex(w.settings_box.device_combo.findData("cpu"))
    w.train_box.method_combo.setCurrentText("s2s")
    w.start_validation()
    app = QApplication.instance()
    while not (w.state.phase == "validate" and w.state.elapsed_s > 3.0):
        app.processEvents(); time.sleep(0.02)
    print("closing at", time.time(), flush=True)
    viewer.close()
    app.processEvents()
""")


def test_closing_napari_during_validate_exits_cleanly(tmp_path):
    """It aborted the process ("terminate called without an active exception", exit 134)."""
    script = tmp_path / "close_during_validate.py"
    script.write_text(_CLOSE_SCRIPT)
    env = dict(os.environ, NAPARI_S2S_CONFIG_DIR=str(tmp_path / "config"))
    env.pop("NAPARI_S2S_SYNC", None)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    ended = time.time()
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "terminate called" not in proc.stderr
    closing = float(proc.stdout.split("closing at")[1].split()[0])
    assert ended - closing < 60, f"the process lived on {ended - closing:.0f} s after closing (budget 120 s)"


# ---------------------------------------------------------------------- defect 5: Stop gives feedback, quick maps
def test_stop_says_stopping_and_the_maps_come_in_one_pass(plugin_dock, synthetic_slide, qtbot):
    widget = plugin_dock()
    _open_synthetic(widget, synthetic_slide, budget=120)
    widget.start_training()
    qtbot.waitUntil(lambda: widget.state.phase == "train" and widget.state.step >= 3, timeout=60000)
    stop = widget.train_box.stop_button
    qtbot.mouseClick(stop, Qt.MouseButton.LeftButton)
    # at once: the state says so, Stop cannot be clicked again
    assert widget.state.phase == "stopping" and "stopping" in widget.state.message
    assert not stop.isEnabled() and stop.text().startswith("Stopping")
    widget._on_state()
    assert widget.train_box.progress_bar.text().startswith("stopping")
    qtbot.waitUntil(lambda: not widget.running, timeout=120000)
    out = widget.last_outcome
    assert out is not None and out.stopped and widget.state.phase == "stopped"
    # the final maps of a stopped run: one pass, no test-time averaging, and the saved config says so
    assert out.config.tta is False and s2s_meta(widget.imputed_layer())["config"].tta is False
    assert "base predictor" in widget.state.message  # how the maps were made (the engine's verdict)
    assert out.impute_s is not None and out.seconds < 120
    assert not stop.isEnabled() and stop.text() == "Stop" and widget.train_box.train_button.isEnabled()


# ---------------------------------------------------------------------- defect 7: a review CSV on its own saved result
def test_review_csv_loads_on_its_own_saved_result(plugin_dock, saved_result, data_dir, tmp_path, notes, monkeypatch):
    """The documented workflow: review while training on a slide, export the CSV, save the result;
    later open the saved result and load the CSV: no warning, and a re-export names the slide."""
    from napari_s2s.gui.review import ReviewTable

    path, genes = saved_result
    widget = plugin_dock()
    monkeypatch.setenv("NAPARI_S2S_SYNC", "1")
    widget.viewer.open(str(data_dir / "her2st_C2.h5ad"), plugin="napari-s2s")
    widget.set_genes(genes)
    widget.train_box.method_combo.setCurrentText("gaussian")
    widget.start_validation()  # fills the review table of her2st_C2
    widget.set_review(genes[0], status="accepted", comment="matches the IHC")
    widget.set_review(genes[1], status="flagged")
    exported = widget.export_review(tmp_path / "her2st_C2_review.csv")
    assert ReviewTable.from_csv(exported).slide == "her2st_C2"

    widget.viewer.open(str(path), plugin="napari-s2s")
    assert widget.current_slide().is_imputed_result
    assert widget.load_review(exported) == len(genes)
    assert not [n for n in notes if n[0] == "warning"], notes
    rows = widget.review.rows
    assert (rows[genes[0]].status, rows[genes[0]].comment, rows[genes[1]].status) == (
        "accepted",
        "matches the IHC",
        "flagged",
    )
    again = ReviewTable.from_csv(widget.export_review(tmp_path / "again.csv"))
    assert again.slide == "her2st_C2" and Path(again.source).name == path.name
    # a review of another slide still warns
    other = ReviewTable(slide="her2st_B4")
    other.set_genes(genes[:1])
    widget.load_review(other.to_csv(tmp_path / "b4.csv"))
    assert notes and notes[-1][0] == "warning" and "her2st_B4" in notes[-1][1]


# ---------------------------------------------------------------------- layout: a laptop and a desktop screen
def _within(child, viewport) -> bool:
    """``child`` shown in full inside ``viewport`` (no scrolling needed)."""
    top = child.mapTo(viewport, child.rect().topLeft())
    bottom = child.mapTo(viewport, child.rect().bottomRight())
    return (
        child.isVisible()
        and top.y() >= 0
        and top.x() >= 0
        and bottom.y() < viewport.height()
        and bottom.x() < viewport.width()
    )


@pytest.mark.parametrize("size", [(1366, 768), (1920, 1080)], ids=["1366x768", "1920x1080"])
def test_layout_fits_the_screen(plugin_dock, saved_result, data_dir, qtbot, size):
    from napari_s2s.gui import dock_layout

    path, genes = saved_result
    widget = plugin_dock(size=size)
    qtbot.waitUntil(lambda: widget.review_dock is not None, timeout=5000)
    window = widget.window()
    assert (window.width(), window.height()) == size
    widget.viewer.open(str(data_dir / "her2st_C2.h5ad"), plugin="napari-s2s")
    main_dock = dock_layout.host_dock(widget)
    main_dock.raise_()
    qtbot.wait(200)
    # Train, Stop, Validate and the progress line without scrolling
    viewport = widget._scroll.viewport()
    tb = widget.train_box
    for child in (tb.train_button, tb.stop_button, tb.validate_button, tb.progress_bar, tb.eta_label):
        assert _within(child, viewport), (child, size)
        assert _within(child, window)
    # results reachable: the Results box on screen, the review table one click away (or in view)
    assert _within(widget.results_box.review_button, viewport) and _within(widget.results_box.save_button, viewport)
    tabified = widget.review_dock in window.tabifiedDockWidgets(main_dock)
    assert tabified == (size[1] < dock_layout.TABIFY_BELOW_PX)
    # the review table: room for it, Gene and Status always in view, comments readable
    widget.viewer.open(str(path), plugin="napari-s2s")
    qtbot.waitUntil(lambda: widget.review_panel.isVisible(), timeout=5000)  # a saved result shows its review
    qtbot.wait(200)
    t = widget.review_table
    assert t.rowCount() == len(genes)
    assert widget.review_dock.width() >= 340
    for col in range(t.columnCount()):
        t.setCurrentCell(0, col)  # even with the Comment cell current, nothing scrolls sideways
        for c in (0, 1):
            x = t.columnViewportPosition(c)
            assert x >= 0 and x + t.columnWidth(c) <= t.viewport().width(), (col, c)
    assert t.columnWidth(COMMENT_COL) >= 90
    assert widget.review_panel.comment_edit.width() >= 300  # the whole comment, readable
    rows_shown = t.viewport().height() // max(1, t.rowHeight(0))
    assert rows_shown >= (4 if size[1] >= 1000 else 12), rows_shown
    if tabified:  # the main panel is one click away again
        dock_layout.show_panel(main_dock)
        qtbot.wait(100)
        assert _within(tb.train_button, viewport)


# ---------------------------------------------------------------------- side by side, saved result, notifications
def test_side_by_side_on_a_saved_result_is_labelled(plugin_dock, saved_result):
    path, genes = saved_result
    widget = plugin_dock()
    viewer = widget.viewer
    viewer.open(str(path), plugin="napari-s2s")
    assert viewer.canvas.overlays.text.position == "top_right"  # notifications come up bottom right
    widget.results_box.side_by_side_check.setChecked(True)
    assert viewer.canvas.grid.enabled, widget.state.message
    assert "train first" not in widget.state.message  # training is impossible here
    labelled = [x for x in viewer.layers if x.visible and x.name_overlay.visible]
    names = [x.name for x in labelled]
    assert len(labelled) == 2 and any("measured" in n for n in names) and any("imputed by S2S-ST" in n for n in names)
    measured = next(x for x in labelled if "measured" in x.name)
    imputed = next(x for x in labelled if "imputed" in x.name)
    # "measured" is the result's values at its measured spots, on the measured lattice, where they are
    slide = widget.current_slide()
    spots = slide.spot_world()[slide.result_measured() & slide.usable()]

    def at_spots(layer):
        idx = np.round(layer.world_to_data(np.c_[np.zeros(len(spots)), spots])).astype(int)
        return layer.data[:, idx[:, 1], idx[:, 2]]

    np.testing.assert_array_equal(at_spots(measured), at_spots(imputed))
    assert np.isfinite(at_spots(measured)).all()
    assert 0 < np.isfinite(measured.data[0]).sum() < np.isfinite(imputed.data[0]).sum() / 2  # sparser
    assert viewer.canvas.overlays.text.gridded  # the gene's name in each panel
    widget.results_box.side_by_side_check.setChecked(False)
    assert not viewer.canvas.grid.enabled
    assert not [x for x in viewer.layers if (s2s_meta(x) or {}).get("side_by_side_only")]
    assert not any(x.name_overlay.visible for x in viewer.layers) and not viewer.canvas.overlays.text.gridded


# ---------------------------------------------------------------------- dialogs, method list, Save
def test_side_by_side_labels_fit_their_panels_on_a_laptop_screen(plugin_dock, saved_result, tmp_path, qtbot):
    """A long slide name side by side at 1366x768: each panel's label shrinks to fit its panel instead
    of running into the next one (seen on the whole Visium slide), and follows the window's size."""
    import shutil

    from napari_s2s.gui import side_by_side

    path = Path(shutil.copy(saved_result[0], tmp_path / "visium_mouse_brain_A1_s2s.h5ad"))
    widget = plugin_dock(size=(1366, 768))
    viewer = widget.viewer
    viewer.open(str(path), plugin="napari-s2s")
    widget.results_box.side_by_side_check.setChecked(True)
    qtbot.wait(100)
    labelled = [x for x in viewer.layers if x.visible and x.name_overlay.visible]
    assert len(labelled) == 2 and all("visium_mouse_brain_A1_s2s" in x.name for x in labelled)

    def panel_px():
        return viewer.canvas.viewbox_size(viewer.layers)[1]

    def widths():  # estimated label widths in pixels
        return [len(x.name) * x.name_overlay.font_size * side_by_side.PX_PER_CHAR_PT for x in labelled]

    sizes = {x.name_overlay.font_size for x in labelled}
    assert len(sizes) == 1 and min(sizes) < side_by_side.LABEL_PT[0]  # smaller than the usual 9 pt
    assert max(widths()) <= panel_px()
    small = min(sizes)
    viewer.window.resize(1900, 1000)  # a wider window: the labels grow back
    qtbot.waitUntil(lambda: labelled[0].name_overlay.font_size > small, timeout=3000)
    assert max(widths()) <= panel_px()
    big = labelled[0].name_overlay.font_size
    labelled[1].name = labelled[1].name + " (preview, step 1200)"  # a longer name: smaller again
    assert labelled[0].name_overlay.font_size < big and max(widths()) <= panel_px()
    # the gene's name (top right of each panel) leaves the scale bar (top left) its room: a long
    # Ensembl id shrinks; back on one canvas it has its usual size
    viewer.window.resize(1366, 768)
    gene = viewer.canvas.overlays.text
    gene.text = "ENSMUSG00000098557.1"
    qtbot.waitUntil(lambda: gene.font_size < side_by_side.GENE_PT[0], timeout=3000)
    room = panel_px() - side_by_side.SCALE_BAR_PX
    assert len(gene.text) * gene.font_size * side_by_side.PX_PER_CHAR_PT <= room
    widget.results_box.side_by_side_check.setChecked(False)
    assert gene.font_size == side_by_side.GENE_PT[0]
    stays = [x for x in labelled if x in viewer.layers]  # the stack itself (its "measured" view goes)
    assert len(stays) == 1
    kept = stays[0].name_overlay.font_size
    viewer.window.resize(1366, 768)  # out of side by side, nothing listens to the canvas any more
    stays[0].name = "x" * 80
    qtbot.wait(100)
    assert all(not x.name_overlay.visible for x in viewer.layers)
    assert stays[0].name_overlay.font_size == kept


def test_dialogs_start_in_the_slides_folder(plugin_dock, data_dir, monkeypatch):
    from qtpy.QtWidgets import QFileDialog

    widget = plugin_dock()
    widget.viewer.open(str(data_dir / "visium_mouse_brain"), plugin="napari-s2s")
    asked = {}  # dialog title -> where it starts

    def remember(parent, title, start, *a, **k):
        asked[title] = start
        return "", ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", remember)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", remember)
    widget.results_box._save_dialog()
    widget.review_panel._export_dialog()
    widget.review_panel._load_dialog()
    widget.slide_box.open_button.menu().actions()[0].trigger()
    folder = data_dir  # the Space Ranger folder sits in the data folder
    assert asked == {
        "Save imputed maps": str(folder / "visium_mouse_brain_s2s.h5ad"),
        "Export review": str(folder / "visium_mouse_brain_review.csv"),
        "Load a review": str(folder),
        "Open a slide (.h5ad)": str(folder),
    }


def test_validate_lists_the_methods_users_choose_between(plugin_dock):
    from napari_s2s.gui.train_box import ALL_METHODS

    box = plugin_dock().train_box
    combo = box.method_combo

    def listed():
        return [combo.itemText(i) for i in range(combo.count()) if combo.itemText(i)]

    shown = listed()
    assert shown[0] == "s2s" and {"gaussian", "pca_gaussian", "he_gaussian", "s2s-he", "dist"} <= set(shown)
    assert not [m for m in shown if m.startswith("s2s-no") or m.endswith("-permuted")]  # ablations: behind...
    assert shown[-1] == ALL_METHODS
    combo.setCurrentIndex(combo.findText(ALL_METHODS))
    combo.activated.emit(combo.currentIndex())
    everything = listed()
    assert {"s2s-noaug", "s2s-network", "he_gaussian-permuted"} <= set(everything) and ALL_METHODS not in everything
    assert box.method() == "s2s"  # the choice stays what it was


def test_save_says_why_it_is_disabled(plugin_dock, saved_result, synthetic_slide):
    widget = plugin_dock()
    save = widget.results_box.save_button
    assert not save.isEnabled() and "open" in save.toolTip()
    _open_synthetic(widget, synthetic_slide)
    assert not save.isEnabled() and "train first" in save.toolTip()
    widget.viewer.open(str(saved_result[0]), plugin="napari-s2s")
    assert not save.isEnabled() and "saved result" in save.toolTip()


def test_the_review_panel_opens_the_blinded_reading_dock(plugin_dock, qtbot):
    """Blinded review sessions start from the dock users have open: "Blinded…" in the review panel adds
    the plugin's "Blinded reading" dock (once: a second click shows the same one)."""
    from napari_s2s.gui.blinded import BlindedReader
    from napari_s2s.gui.dock_layout import host_dock

    widget = plugin_dock(size=(1366, 768))
    button = widget.review_panel.blinded_button
    assert button.isVisibleTo(widget.review_panel) and "names hidden" in button.toolTip()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    docks = widget.window().findChildren(BlindedReader)  # the main window the dock sits in
    assert len(docks) == 1
    # on a laptop screen a tab beside the main panel, in front (not a strip under the review table)
    assert host_dock(docks[0]) in widget.window().tabifiedDockWidgets(host_dock(widget))
    qtbot.waitUntil(lambda: not docks[0].visibleRegion().isEmpty(), timeout=3000)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert len(widget.window().findChildren(BlindedReader)) == 1


# ---------------------------------------------------------------------- a micrometre scale bar
def test_opening_a_slide_in_micrometres_turns_the_scale_bar_on_once(plugin_dock, data_dir):
    """napari reads the scale bar's unit from the layers (micrometres here); the dock turns the bar on
    for the first slide in um, not for a slide in lattice pitches, and not again once hidden."""
    from napari_s2s.gui.gene_display import scale_bar

    widget = plugin_dock()
    widget.viewer.open(str(data_dir / "st_breast_cancer_layer2.h5ad"), plugin="napari-s2s")  # grid only
    assert widget.current_slide().geometry.units == "pitch" and not scale_bar(widget.viewer).visible
    widget = plugin_dock()
    viewer = widget.viewer
    bar = scale_bar(viewer)
    viewer.open(str(data_dir / "her2st_C2.h5ad"), plugin="napari-s2s")
    assert widget.current_slide().name == "her2st_C2" and bar.visible
    assert [str(u) for u in viewer.layers.units[-2:]] == ["micrometer"] * 2  # the bar's unit: the map axes
    bar.visible = False  # the user hides it
    viewer.open(str(data_dir / "her2st_B4.h5ad"), plugin="napari-s2s")
    assert widget.current_slide().name == "her2st_B4" and not bar.visible


def test_the_results_come_into_view_when_the_maps_are_done(plugin_dock, data_dir, qtbot, monkeypatch):
    """On a 1366x768 screen the done line (what the networks added, against which base) takes a few
    lines and pushed Save and Review table below the panel's fold; the panel now scrolls them into view,
    the progress line staying in view too."""
    monkeypatch.setenv("NAPARI_S2S_SYNC", "1")
    widget = plugin_dock(size=(1366, 768))
    qtbot.waitUntil(lambda: widget.review_dock is not None, timeout=5000)
    widget.viewer.open(str(data_dir / "her2st_C2.h5ad"), plugin="napari-s2s")
    widget.settings_box.budget_spin.setValue(5)
    widget.settings_box.device_combo.setCurrentIndex(widget.settings_box.device_combo.findData("cpu"))
    widget.start_training()
    qtbot.waitUntil(lambda: widget.state.phase == "done", timeout=120000)
    viewport = widget._scroll.viewport()
    label = widget.train_box.eta_label
    qtbot.waitUntil(lambda: label.height() > 3 * label.fontMetrics().height(), timeout=3000)  # the done line, drawn
    qtbot.waitUntil(lambda: _within(widget.results_box.save_button, viewport), timeout=3000)
    assert label.height() >= label.heightForWidth(label.width())  # the whole done line, not clipped
    for child in (widget.results_box.save_button, widget.results_box.review_button, widget.train_box.progress_bar):
        assert _within(child, viewport), child


# ---------------------------------------------------------------------- several slides open
def _shown(viewer, slide) -> list[bool]:
    return [layer.visible for layer in viewer.layers if (s2s_meta(layer) or {}).get("slide") is slide]


def test_picking_a_slide_shows_its_layers_and_brings_back_its_genes_and_review(plugin_dock, data_dir, qtbot):
    """Two slides open: the one picked in the Slide box is the one on the canvas (the other's layers
    hidden, the view fitted to it), with the genes the user picked on it and its review as they were."""
    widget = plugin_dock()
    viewer = widget.viewer
    viewer.open(str(data_dir / "her2st_C2.h5ad"), plugin="napari-s2s")
    c2 = widget.current_slide()
    widget.add_genes(["ERBB2"])  # picked by hand, beside the top genes
    picked = widget.selected_genes()
    widget.review.set_genes(picked)  # (what a run's maps do) then the user reviews one
    widget.review_panel.refresh()
    widget.set_review("ERBB2", status="accepted", comment="membranous")
    viewer.open(str(data_dir / "her2st_B4.h5ad"), plugin="napari-s2s")
    b4 = widget.current_slide()
    assert b4 is not c2 and all(_shown(viewer, b4)) and not any(_shown(viewer, c2))
    assert "ERBB2" not in widget.selected_genes() and "ERBB2" not in widget.review.rows
    widget.select_slide(c2)
    qtbot.wait(50)  # the view is fitted once the event loop turns
    assert all(_shown(viewer, c2)) and not any(_shown(viewer, b4))
    assert s2s_meta(viewer.layers.selection.active)["slide"] is c2  # its stack in the layer controls
    g = int(viewer.dims.current_step[0])
    assert viewer.canvas.overlays.text.text == s2s_meta(viewer.layers.selection.active)["genes"][g]
    assert widget.selected_genes() == picked
    row = widget.review.rows["ERBB2"]
    assert (row.status, row.comment) == ("accepted", "membranous")
    (he,) = [x for x in viewer.layers if (s2s_meta(x) or {}).get("slide") is c2 and s2s_meta(x)["kind"] == "he"]
    lo, hi = np.asarray(he.extent.world)[:, -2:]
    assert np.all(lo <= np.asarray(viewer.scene.camera.center)[-2:]) and np.all(
        np.asarray(viewer.scene.camera.center)[-2:] <= hi
    )
    # a layer the user hid stays hidden when its slide comes back
    measured = [
        x for x in viewer.layers if (s2s_meta(x) or {}).get("slide") is c2 and s2s_meta(x)["kind"] == "measured"
    ]
    measured[0].visible = False
    widget.select_slide(b4)
    widget.select_slide(c2)
    assert not measured[0].visible and he.visible


def test_the_dock_says_why_train_is_off_and_drops_a_stale_unknown_gene_note(plugin_dock, data_dir, notes):
    widget = plugin_dock()
    train = widget.train_box.train_button
    assert not train.isEnabled() and "open a slide" in train.toolTip()
    widget.viewer.open(str(data_dir / "her2st_C2.h5ad"), plugin="napari-s2s")
    assert train.isEnabled()
    widget.apply_gene_list("ERBB2, FOOBAR1")
    note = widget.genes_box.unknown_label
    assert "FOOBAR1" in note.text() and not note.isHidden()
    widget.genes_box.clear_button.click()
    assert note.isHidden()  # the note was about the pasted list, which is gone
    assert not train.isEnabled() and "pick genes" in train.toolTip()


@pytest.mark.parametrize("start", ["start_training", "start_validation"])
def test_guidance_on_without_an_image_runs_without_it_and_says_so(plugin_dock, data_dir, notes, monkeypatch, start):
    """H&E guidance "on" is a setting kept across slides; on a slide with no image, Train and Validate go
    on without the image and say so (Validate used to warn so and then fail on the image it lacked)."""
    widget = plugin_dock()
    widget.viewer.open(str(data_dir / "st_breast_cancer_layer2.h5ad"), plugin="napari-s2s")  # no image
    widget.settings_box.histology_combo.setCurrentText("on")
    widget.train_box.method_combo.setCurrentText("s2s")
    jobs = []
    monkeypatch.setattr(widget, "_start", lambda job, message: jobs.append(job))
    getattr(widget, start)()
    (job,) = jobs
    options = job.overrides if start == "start_training" else job.options
    assert options["histology"] == "off"
    assert any(kind == "warning" and "no usable H&E image" in msg and "without it" in msg for kind, msg in notes)
    assert getattr(job, "he_method", None) is None


def test_a_run_on_a_slide_not_on_show_keeps_its_maps_and_review_with_it(plugin_dock, synthetic_slide, data_dir, qtbot):
    """Train on one slide, open another while it runs: the new slide stays on screen, the run's maps land
    (hidden) on its own slide with its review, and come into view when that slide is picked again."""
    widget = plugin_dock()
    viewer = widget.viewer
    _open_synthetic(widget, synthetic_slide, n_genes=2, budget=4)
    widget.start_training()
    viewer.open(str(data_dir / "st_breast_cancer_layer2.h5ad"), plugin="napari-s2s")
    other = widget.current_slide()
    assert other is not synthetic_slide
    qtbot.waitUntil(lambda: not widget.running, timeout=120000)
    assert widget.last_outcome is not None and widget.current_slide() is other
    assert all(_shown(viewer, other)) and not any(_shown(viewer, synthetic_slide))
    imputed = widget.imputed_layer(synthetic_slide)
    assert imputed is not None and not imputed.visible and widget.imputed_layer(other) is None
    assert not widget.review.rows  # the other slide's review: nothing of the run's genes
    widget.select_slide(synthetic_slide)
    assert imputed.visible and list(widget.review.rows) == widget.last_outcome.genes


def test_a_slide_with_too_few_spots_cannot_be_trained_and_says_why(plugin_dock, formats_dir):
    """The Visium HD layout sample has bins but no count in them: Train used to be enabled and failed
    at the click with a numpy error; now Train and Validate are off and say why."""
    widget = plugin_dock()
    widget.viewer.open(str(formats_dir / "visium_hd_mouse_brain_layout"), plugin="napari-s2s")
    slide = widget.current_slide()
    assert slide is not None and int(slide.usable().sum()) == 0
    widget.set_genes([str(g) for g in slide.genes[:2]])
    for button in (widget.train_box.train_button, widget.train_box.validate_button):
        assert not button.isEnabled() and "too few to train" in button.toolTip()


def test_blinded_reading_from_the_plugins_menu_is_a_tab_on_a_laptop_screen(plugin_dock, qtbot):
    """The README's way in (Plugins > napari-s2s > Blinded reading), not only the review panel's button."""
    from napari_s2s.gui.blinded import BlindedReader
    from napari_s2s.gui.dock_layout import host_dock

    widget = plugin_dock(size=(1366, 768))
    widget.viewer.window.add_plugin_dock_widget("napari-s2s", "Blinded reading")
    (reader,) = widget.window().findChildren(BlindedReader)
    qtbot.waitUntil(lambda: host_dock(reader) in widget.window().tabifiedDockWidgets(host_dock(widget)), timeout=3000)
