"""The "Blinded reading" dock as users get it (``add_plugin_dock_widget``): two readers answer a whole
session by key presses, pause and resume, then the merged statistics are checked by hand."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_s2s.core.review.answers import ReaderAnswers, load_readers, reader_file
from napari_s2s.core.review.create import create_session
from napari_s2s.core.review.maps import load_maps
from napari_s2s.core.review.session import ReviewSession
from napari_s2s.core.review.stats import merge

pytestmark = pytest.mark.gui

ARMS = ("gaussian", "he_gaussian")
#: What each reader prefers per gene (None: can't tell), in the session's gene order.
PLAN = {
    "Dr A": {"ERBB2": "gaussian", "SCD": "gaussian", "IGHM": "he_gaussian", "FABP7": None},
    "Dr B": {"ERBB2": "gaussian", "SCD": "he_gaussian", "IGHM": "he_gaussian", "FABP7": "gaussian"},
}
DIGITS = {"left": Qt.Key.Key_1, "right": Qt.Key.Key_2, "cant_tell": Qt.Key.Key_0}
ARROWS = {"left": Qt.Key.Key_Left, "right": Qt.Key.Key_Right, "cant_tell": Qt.Key.Key_Down}


@pytest.fixture
def notes(monkeypatch):
    seen = []
    monkeypatch.setattr("napari_s2s.gui.blinded._notify", lambda kind, msg: seen.append((kind, msg)))
    return seen


@pytest.fixture
def session(review_results, tmp_path):
    return create_session(
        tmp_path / "review.json",
        review_results["slide"],
        compare=[review_results["gaussian"], review_results["he_gaussian"]],
    )


@pytest.fixture
def dock(make_napari_viewer, monkeypatch, tmp_path):
    monkeypatch.setenv("NAPARI_S2S_CONFIG_DIR", str(tmp_path / "config"))
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1366, 768)  # a laptop screen
    _, widget = viewer.window.add_plugin_dock_widget("napari-s2s", "Blinded reading")
    return viewer, widget


def _key_for(widget, plan, keys):
    gene = widget.current_gene
    want = plan[gene]
    if want is None:
        return keys["cant_tell"]
    return keys["left"] if ARMS.index(want) == widget.answers.left_arm(gene) else keys["right"]


def _check_view(viewer, widget, maps):
    """The two layers show the current gene's maps where the reader's placement says, one contrast."""
    gene = widget.current_gene
    left = widget.answers.left_arm(gene)
    layers = {layer.name: layer for layer in viewer.layers if layer.visible}
    assert {"left", "right", "H&E", "H&E (copy)"} <= set(layers)
    assert not any(a in layer.name for layer in viewer.layers for a in ARMS)  # names hidden
    np.testing.assert_array_equal(layers["left"].data, maps.image(left, gene)[0])
    np.testing.assert_array_equal(layers["right"].data, maps.image(1 - left, gene)[0])
    assert tuple(layers["left"].contrast_limits) == tuple(layers["right"].contrast_limits) == maps.limits(gene)
    assert viewer.canvas.grid.enabled
    assert widget.gene_label.text() == gene
    # the H&E (cropped around the maps) and its copy under the right map sit at the same place
    np.testing.assert_allclose(layers["H&E (copy)"].translate, layers["H&E"].translate)
    he, scale = maps.he()
    assert layers["H&E"].data.shape[0] < he.shape[0] and np.all(np.asarray(layers["H&E"].translate) > 0)
    from napari_s2s.core.review.render import world_bounds

    lo, hi = np.asarray(layers["H&E"].extent.world)  # the cells hold both maps: the H&E covers them
    for k in (0, 1):
        y0, y1, x0, x1 = world_bounds(*maps.image(k, gene))
        assert lo[0] <= y0 and y1 <= hi[0] and lo[1] <= x0 and x1 <= hi[1]


def test_two_readers_by_keys_pause_resume_and_merge(dock, session, qtbot, review_results, notes, monkeypatch, tmp_path):
    viewer, w = dock
    viewer.open(str(review_results["slide"]), plugin="napari-s2s")  # the user's own layers
    own = list(viewer.layers)
    maps = load_maps(session)
    assert w.open_session(session.path)
    assert "gaussian" not in w.session_label.text()  # the dock does not name the arms

    # Dr A: digit keys; a score by mouse; a comment whose digits do not answer
    assert w.start("Dr A")
    assert not any(layer.visible for layer in own)  # the reader sees the two maps only
    bar = viewer.canvas.overlays.scale_bar  # sizes in micrometres, one bar per map
    assert bar.visible and bar.gridded and [str(u) for u in viewer.layers.units[-2:]] == ["micrometer"] * 2
    # each grid cell shows a whole map (napari sizes the cells at the next paint; the view is fitted then)
    from napari_s2s.core.review.render import world_bounds

    canvas = viewer.window._qt_viewer.canvas
    qtbot.waitUntil(lambda: canvas._current_viewbox_size[0] > 50)
    qtbot.wait(50)
    y0, y1, x0, x1 = world_bounds(*maps.image(0, w.current_gene))
    width, height = np.asarray(canvas._current_viewbox_size) / viewer.scene.camera.zoom
    assert width >= x1 - x0 and height >= y1 - y0
    assert w.progress_text() == "0 / 4"
    assert "1" in {str(k) for k in viewer.keymap}  # the answer keys work with the canvas focused too
    _check_view(viewer, w, maps)
    qtbot.mouseClick(w.score_left.buttons[4], Qt.MouseButton.LeftButton)
    w.comment_edit.setFocus()
    qtbot.keyClicks(w.comment_edit, "blurry 1 2 0")
    qtbot.keyClick(w.comment_edit, Qt.Key.Key_Left)
    assert w.progress_text() == "0 / 4" and w.comment_edit.text() == "blurry 1 2 0"
    qtbot.keyClick(w.comment_edit, Qt.Key.Key_Return)  # Enter: the keys answer again
    first = w.current_gene
    qtbot.keyClick(w, _key_for(w, PLAN["Dr A"], DIGITS))
    saved = json.loads(reader_file(session, "Dr A").read_text())["answers"][first]
    assert saved["score_left"] == 4 and saved["comment"] == "blurry 1 2 0"  # on disk after one answer
    assert w.progress_text() == "1 / 4" and w.score_left.value() is None and w.comment_edit.text() == ""
    while w.reading:
        _check_view(viewer, w, maps)
        qtbot.keyClick(w, _key_for(w, PLAN["Dr A"], DIGITS))
    assert "done: 4 / 4" in w.status_label.text()
    assert all(layer.visible for layer in own) and [layer.name for layer in viewer.layers] == [x.name for x in own]
    assert not viewer.canvas.grid.enabled

    # Dr B: arrow keys, one answer with the canvas focused, pauses after two genes
    assert w.start("Dr B")
    qtbot.keyClick(w, _key_for(w, PLAN["Dr B"], ARROWS))
    canvas.native.setFocus()
    qtbot.keyClick(canvas.native, _key_for(w, PLAN["Dr B"], DIGITS))
    assert w.progress_text() == "2 / 4"
    w.setFocus()
    order = ReaderAnswers.load(reader_file(session, "Dr B"), session).genes
    qtbot.mouseClick(w.pause_button, Qt.MouseButton.LeftButton)
    assert "paused at 2 / 4" in w.status_label.text() and not w.reading
    assert "1" not in {str(k) for k in viewer.keymap}  # the viewer's keys are its own again
    # reopen the session, same name (other spelling): continues at the third gene
    assert w.open_session(session.path) and w.start("dr b")
    assert w.progress_text() == "2 / 4" and w.current_gene == order[2]
    qtbot.mouseClick(w.back_button, Qt.MouseButton.LeftButton)  # back to an answered gene, and forward again
    assert w.current_gene == order[1] and "answered before" in w.progress_label.text()
    qtbot.keyClick(w, _key_for(w, PLAN["Dr B"], ARROWS))
    while w.reading:
        qtbot.keyClick(w, _key_for(w, PLAN["Dr B"], ARROWS))
    assert not notes

    # merge: A = [g, g, h, ?], B = [g, h, h, g] per gene
    s = merge(session, load_readers(session))
    o = s["overall"]
    assert o["n"] == 8 and o["prefer"]["gaussian"]["n"] == 4 and o["prefer"]["he_gaussian"]["n"] == 3
    assert o["cant_tell"]["n"] == 1
    assert o["prefer"]["gaussian"]["ci95"] == pytest.approx([0.215214, 0.784786], abs=1e-5)  # Wilson, 4 of 8
    # p_o = 2/4; p_e = (2/4)(2/4) + (1/4)(2/4) = 3/8 -> kappa = (1/2 - 3/8) / (5/8) = 0.2
    assert s["agreement"]["statistic"] == "cohen" and s["agreement"]["kappa"] == pytest.approx(0.2)
    assert s["per_gene"]["ERBB2"]["agreement"] == 1.0 and s["per_gene"]["SCD"]["agreement"] == 0.0
    assert [a["comment"] for a in s["per_gene"][first]["answers"]] == ["blurry 1 2 0", ""]
    assert o["mean_score"]["gaussian"]["n"] + o["mean_score"]["he_gaussian"]["n"] == 1

    # the dock's "Unblind…" shows the same cells as `napari-s2s session stats`, and writes the report
    from napari_s2s.core.review.stats import summary_rows

    dlg = w.unblind()
    rows = summary_rows(s)
    assert [[dlg.cell(r, c) for c in range(len(rows[0]))] for r in range(len(rows))] == rows
    assert dlg.cell(len(rows) - 1, 0) == "overall" and "Cohen's kappa 0.200" in dlg.agreement_label.text()
    monkeypatch.setenv("NAPARI_S2S_SYNC", "1")
    dlg.save_report(tmp_path / "report.html")
    assert dlg.written == tmp_path / "report.html" and "Dr A" in dlg.written.read_text(encoding="utf-8")
    dlg.close()


def test_bad_session_and_foreign_answers(dock, session, review_results, tmp_path, notes):
    viewer, w = dock
    assert not w.open_session(review_results["slide"])  # a slide, not a session
    assert "not a napari-s2s review session" in w.status_label.text() and notes[-1][0] == "error"
    assert str(review_results["slide"]) in notes[-1][1] and "\n" not in notes[-1][1]
    # answers of another session where this reader's file should be: refused, left as it was
    other = create_session(
        tmp_path / "other.json",
        review_results["slide"],
        compare=[review_results["he_gaussian"], review_results["gaussian"]],
    )
    src = ReaderAnswers.open(other, "Dr C").path
    dst = reader_file(session, "Dr C")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    before = dst.read_bytes()
    assert w.open_session(session.path)
    assert not w.start("Dr C")
    assert "another session" in notes[-1][1] and dst.read_bytes() == before and not w.reading
    # a result that moved after the session was made
    moved = tmp_path / "moved"
    moved.mkdir()
    a = shutil.copy(review_results["gaussian"], moved / "a.h5ad")
    s2 = create_session(moved / "s.json", review_results["slide"], compare=[a, review_results["he_gaussian"]])
    (moved / "a.h5ad").unlink()
    assert not w.open_session(s2.path)
    assert "a.h5ad" in notes[-1][1] and "not found" in notes[-1][1]
    assert not [layer for layer in viewer.layers if layer.name in ("left", "right")]


def test_new_session_dialog(dock, review_results, tmp_path, monkeypatch):
    from napari_s2s.gui.session_dialog import NewSessionDialog

    monkeypatch.setenv("NAPARI_S2S_SYNC", "1")
    viewer, w = dock
    viewer.open(str(review_results["slide"]), plugin="napari-s2s")
    dlg = NewSessionDialog(viewer, w)
    assert dlg.slide_row.text() == str(review_results["slide"])  # the slide open in the viewer
    dlg.mode_combo.setCurrentText("hold-out validation (a method vs the measured values)")
    assert not dlg.result_a.isVisible() or not dlg.isVisible()
    dlg.method_a.setCurrentText("gaussian")
    dlg.genes_edit.setText("ERBB2,SCD")
    dlg.out_row.setText(str(tmp_path / "h.json"))
    assert dlg.arguments()["holdout"] == ["gaussian"]
    dlg.create()
    assert dlg.created == tmp_path / "h.json"
    s = ReviewSession.load(dlg.created)
    assert s.kind == "holdout" and s.arm_names == ["measured", "gaussian"] and s.genes == ["ERBB2", "SCD"]
    assert w.open_session(dlg.created) and w.start("R")
    assert w.progress_text() == "0 / 2"
    w.pause()
