"""The Review box on its own: edits reach the model, metrics and H&E columns, CSV out and back in."""

from __future__ import annotations

import pytest

from napari_s2s.gui.review import ReviewTable
from napari_s2s.gui.review_panel import COMMENT_COL, HE_COLS, HIDDEN_COLS, ReviewPanel, column

pytestmark = pytest.mark.gui

GENES = ["ERBB2", "GRB7", "KRT19"]


@pytest.fixture
def panel(qtbot):
    seen = {"clicked": [], "notes": []}
    p = ReviewPanel(
        on_gene_clicked=seen["clicked"].append,
        notify=lambda kind, msg: seen["notes"].append((kind, msg)),
        start_dir=lambda: "",
        known_genes=lambda: set(GENES) | {"SCGB2A2"},
    )
    qtbot.addWidget(p)
    p.review = ReviewTable(slide="her2st_C2")
    p.review.set_genes(GENES)
    p.refresh()
    p.seen = seen
    return p


def test_edits_in_the_table_reach_the_model(panel):
    t = panel.table
    assert t.rowCount() == 3 and [t.item(r, 0).text() for r in range(3)] == GENES
    t.item(1, 1).setText("flag")  # as the status cell's combo box commits it
    t.item(0, COMMENT_COL).setText("matches\nthe IHC")
    assert panel.review.rows["GRB7"].status == "flagged"
    assert panel.review.rows["ERBB2"].comment == "matches the IHC"  # one line in the CSV
    panel.table.cellClicked.emit(2, 0)
    assert panel.seen["clicked"] == ["KRT19"]
    assert "flagged" in panel.summary.text() or "1 flagged" in panel.summary.text()


def test_h_and_e_columns_show_only_with_a_comparison(panel):
    t = panel.table
    assert all(t.isColumnHidden(column(h)) for h in HE_COLS + HIDDEN_COLS)
    panel.review.set_metrics({"ERBB2": {"pcc": 0.5, "rmse": 0.8, "pcc_he": 0.6, "rmse_he": 0.7}})
    panel.refresh()
    assert not any(t.isColumnHidden(column(h)) for h in HE_COLS)
    assert all(t.isColumnHidden(column(h)) for h in HIDDEN_COLS)  # guided values: tooltip and CSV only
    cell = t.item(0, column("ΔPCC"))
    assert cell.text() == "+0.100" and "0.500 without H&E, 0.600 with H&E" in cell.toolTip()
    assert t.item(0, column("ΔRMSE")).text() == "-0.100" and t.item(1, column("PCC")).text() == ""


def test_export_then_load_continues_the_review(panel, tmp_path):
    panel.set_review("ERBB2", status="accepted", comment="clear")
    panel.set_review("KRT19", status="flagged")
    out = panel.export(tmp_path / "review.csv")
    other = ReviewPanel(lambda g: None, lambda k, m: None, lambda: "", lambda: set(GENES))
    other.review = ReviewTable(slide="her2st_C2")
    assert other.load(out) == 3
    rows = other.review.rows
    assert (rows["ERBB2"].status, rows["ERBB2"].comment) == ("accepted", "clear")
    assert rows["KRT19"].status == "flagged" and rows["GRB7"].status == ""
    assert other.table.rowCount() == 3 and other.table.item(0, 1).text() == "accept"
    other.deleteLater()


def test_load_keeps_the_slides_genes_and_warns_about_another_slide(panel, tmp_path):
    theirs = ReviewTable(slide="her2st_B4")
    theirs.set_genes(["ERBB2", "NOT_HERE"])
    theirs.set_status("ERBB2", "flagged")
    path = theirs.to_csv(tmp_path / "b4.csv")
    assert panel.load(path) == 1  # NOT_HERE is not a gene of this slide
    assert "NOT_HERE" not in panel.review.rows and panel.review.rows["ERBB2"].status == "flagged"
    assert panel.seen["notes"] and panel.seen["notes"][-1][0] == "warning" and "her2st_B4" in panel.seen["notes"][-1][1]
    bad = tmp_path / "bad.csv"
    bad.write_text("gene,status\nERBB2,maybe\n")
    with pytest.raises(ValueError, match="not a napari-s2s review"):
        panel.load(bad)
    assert panel.review.rows["ERBB2"].status == "flagged"  # unchanged by the failed load


def test_keys_review_the_current_gene_and_move_on(panel, qtbot):
    from qtpy.QtCore import Qt

    t = panel.table
    t.setFocus()
    t.setCurrentCell(0, 0)
    assert panel.seen["clicked"][-1] == "ERBB2"  # the gene slider follows the current row
    qtbot.keyClick(t, Qt.Key.Key_A)
    qtbot.keyClick(t, Qt.Key.Key_F)
    assert t.currentRow() == 2 and panel.seen["clicked"][-1] == "KRT19"
    rows = panel.review.rows
    assert (rows["ERBB2"].status, rows["GRB7"].status, rows["KRT19"].status) == ("accepted", "flagged", "")
    t.setCurrentCell(0, 0)
    qtbot.keyClick(t, Qt.Key.Key_U)
    assert rows["ERBB2"].status == "" and t.item(0, 1).text() == "—"
    t.setCurrentCell(2, 0)
    qtbot.keyClick(t, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)  # a shortcut, not a review key
    assert rows["KRT19"].status == ""


def test_the_status_cell_edits_through_a_combo_box(panel, qtbot):
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QComboBox

    t = panel.table
    t.setCurrentCell(2, 1)
    t.editItem(t.item(2, 1))  # a double-click does this
    combo = t.viewport().findChild(QComboBox)
    assert combo is not None and [combo.itemText(i) for i in range(combo.count())] == ["—", "accept", "flag"]
    combo.setCurrentIndex(1)
    combo.activated.emit(1)
    qtbot.waitUntil(lambda: t.state() != t.State.EditingState, timeout=2000)
    assert panel.review.rows["KRT19"].status == "accepted" and t.item(2, 1).text() == "accept"
    # keys on the Status cell review (it is theirs), they do not open the combo box
    qtbot.keyClick(t, Qt.Key.Key_F)
    assert panel.review.rows["KRT19"].status == "flagged"
