"""The dock widget's "Review" box: a table of genes with accept / flag / comment and their metrics.

The model is :class:`~napari_s2s.gui.review.ReviewTable` (plain Python, CSV in and out); this view
shows it, writes edits back to it, and offers "Load…" and "Export CSV…".
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from .review import STATUSES, ReviewTable

#: Metric columns of the review table: header -> ``GeneReview`` attribute. The ``Δ`` columns (the
#: H&E-guided counterpart on the same hold-out task minus the plain method) show only when a
#: validation ran both; the guided values themselves (``+H&E``) stay hidden to keep the table narrow
#: (they are in the Δ cells' tooltips and in the exported CSV).
METRIC_COLS = {
    "PCC": "pcc", "ΔPCC": "dpcc", "RMSE": "rmse", "ΔRMSE": "drmse",
    "PCC +H&E": "pcc_he", "RMSE +H&E": "rmse_he",
}
HE_COLS = ("ΔPCC", "ΔRMSE")
HIDDEN_COLS = ("PCC +H&E", "RMSE +H&E")
#: Tooltips of the review table's headers.
HEADER_TIPS = {
    "PCC": "Pearson correlation with the hidden measured values (hold-out validation; higher is better)",
    "RMSE": "root-mean-square error at the hidden spots (log-normalised units; lower is better)",
    "ΔPCC": "PCC with H&E guidance minus PCC without (positive: the H&E helps this gene)",
    "ΔRMSE": "RMSE with H&E guidance minus RMSE without (negative: the H&E helps this gene)",
}
REVIEW_HEADERS = ["Gene", "Status", *METRIC_COLS, "Comment"]
#: Column of the review table holding the comment (last: it stretches, the numbers stay visible).
COMMENT_COL = len(REVIEW_HEADERS) - 1
#: What the status combo box shows for each of :data:`~napari_s2s.gui.review.STATUSES`.
STATUS_LABELS = ("—", "accept", "flag")
#: Review keys in the table: status of the current gene, then the next gene.
STATUS_KEYS = {Qt.Key.Key_A: "accepted", Qt.Key.Key_F: "flagged", Qt.Key.Key_0: "", Qt.Key.Key_U: ""}


class ReviewPanel(QGroupBox):
    """The review table and its buttons.

    Parameters
    ----------
    on_gene_clicked
        Called with a gene name when its cell is clicked (the widget moves the gene slider).
    notify
        ``notify(kind, message)`` shows a notification (``"info"``, ``"warning"``, ``"error"``).
    start_dir
        Returns the folder the file dialogs start in.
    known_genes
        Returns the genes of the current slide (a loaded review keeps only those).
    """

    def __init__(
        self,
        on_gene_clicked: Callable[[str], None],
        notify: Callable[[str, str], None],
        start_dir: Callable[[], str],
        known_genes: Callable[[], set[str]],
        parent=None,
    ):
        super().__init__("Review", parent)
        self.review = ReviewTable()
        self._on_gene_clicked = on_gene_clicked
        self._notify = notify
        self._start_dir = start_dir
        self._known_genes = known_genes
        lay = QVBoxLayout(self)
        self.table = QTableWidget(0, len(REVIEW_HEADERS))
        self.table.setHorizontalHeaderLabels(REVIEW_HEADERS)
        for c, header in enumerate(REVIEW_HEADERS):
            tip = HEADER_TIPS.get(header)
            if tip:
                self.table.horizontalHeaderItem(c).setToolTip(tip)
            if header in HIDDEN_COLS:
                self.table.setColumnHidden(c, True)
        self.table.verticalHeader().setVisible(False)
        head = self.table.horizontalHeader()
        head.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        head.setStretchLastSection(False)
        head.setSectionResizeMode(COMMENT_COL, QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(120)
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.table.itemChanged.connect(self._on_item)
        self.table.cellClicked.connect(self._on_click)
        self.table.currentCellChanged.connect(self._on_current)
        self.table.installEventFilter(self)
        self.table.setToolTip("keys: A accept, F flag, U (or 0) undo, then the next gene; the gene slider follows")
        lay.addWidget(self.table)
        row = QHBoxLayout()
        self.load_button = QPushButton("Load…")
        self.load_button.setToolTip("continue a review: statuses and comments of a review CSV exported before")
        self.load_button.clicked.connect(self._load_dialog)
        row.addWidget(self.load_button)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("save the review (status, comment, metrics per gene) as CSV")
        self.export_button.clicked.connect(self._export_dialog)
        row.addWidget(self.export_button)
        lay.addLayout(row)

    # ------------------------------------------------------------------ model -> view
    def refresh(self) -> None:
        """Show the model's rows (statuses, comments, metrics)."""
        t = self.table
        t.blockSignals(True)
        t.setRowCount(0)
        for r, row in enumerate(self.review.rows.values()):
            t.insertRow(r)
            gene = QTableWidgetItem(row.gene)
            gene.setFlags(gene.flags() & ~Qt.ItemFlag.ItemIsEditable)
            t.setItem(r, 0, gene)
            combo = QComboBox()
            combo.addItems(list(STATUS_LABELS))
            combo.setCurrentIndex(STATUSES.index(row.status))
            combo.currentIndexChanged.connect(lambda i, g=row.gene: self.review.set_status(g, STATUSES[i]))
            t.setCellWidget(r, 1, combo)
            t.setItem(r, COMMENT_COL, QTableWidgetItem(row.comment))
            for header, attr in METRIC_COLS.items():
                t.setItem(r, column(header), _metric_item(row, header, getattr(row, attr)))
        with_he = any(row.pcc_he is not None or row.rmse_he is not None for row in self.review.rows.values())
        for header in HE_COLS:
            t.setColumnHidden(column(header), not with_he)
        for c in range(COMMENT_COL):
            if c != 1:  # the status combo keeps its width
                t.resizeColumnToContents(c)
        t.blockSignals(False)

    def set_review(self, gene: str, status: str | None = None, comment: str | None = None) -> None:
        """Review a gene (as the table's combo box and comment cell do)."""
        row = list(self.review.rows).index(gene)
        if status is not None:
            self.table.cellWidget(row, 1).setCurrentIndex(STATUSES.index(status))
        if comment is not None:
            self.table.item(row, COMMENT_COL).setText(comment)

    # ------------------------------------------------------------------ files
    def export(self, path: str | Path) -> Path:
        """Write the review as CSV; returns the path written."""
        return self.review.to_csv(path)

    def load(self, path: str | Path) -> int:
        """Take statuses and comments of a review CSV for its genes that the current slide has.

        A CSV of another slide is still loaded, with a warning; a file that is not a review CSV is a
        ``ValueError`` naming it. Returns how many genes were restored.
        """
        genes = self._known_genes()
        if not genes:
            raise ValueError("open the slide the review belongs to first")
        try:
            loaded = ReviewTable.from_csv(path)
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not a napari-s2s review CSV ({type(exc).__name__}: {exc})") from None
        restored = self.review.merge(loaded, genes)
        if loaded.slide and loaded.slide != self.review.slide:
            self._notify("warning", f"{Path(path).name} is the review of {loaded.slide}, not {self.review.slide}")
        self.refresh()
        return restored

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load a review", self._start_dir(), "CSV (*.csv)")
        if not path:
            return
        try:
            n = self.load(path)
        except (ValueError, OSError) as exc:
            self._notify("error", str(exc).splitlines()[0])
            return
        self._notify("info", f"review of {n} genes loaded from {Path(path).name}")

    def _export_dialog(self) -> None:
        start = str(Path(self._start_dir()) / f"{self.review.slide or 'slide'}_review.csv")
        path, _ = QFileDialog.getSaveFileName(self, "Export review", start, "CSV (*.csv)")
        if not path:
            return
        try:
            written = self.export(path)
        except OSError as exc:
            self._notify("error", str(exc).splitlines()[0])
            return
        self._notify("info", f"saved {written}")

    # ------------------------------------------------------------------ view -> model
    def _on_item(self, item: QTableWidgetItem) -> None:
        if item.column() == COMMENT_COL:
            gene = self.table.item(item.row(), 0).text()
            self.review.set_comment(gene, item.text())

    def _on_click(self, row: int, col: int) -> None:
        if col == 0:
            self._on_gene_clicked(self.table.item(row, 0).text())

    def _on_current(self, row: int, col: int, *_) -> None:
        if 0 <= row < self.table.rowCount() and self.table.item(row, 0) is not None:
            self._on_gene_clicked(self.table.item(row, 0).text())

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        """A / F / U keys review the current gene and move to the next (not while editing a comment)."""
        if obj is self.table and event.type() == QEvent.Type.KeyPress and event.key() in STATUS_KEYS:
            if self.table.state() != QTableWidget.State.EditingState and event.modifiers() in (
                Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.KeypadModifier
            ):
                self.review_current(STATUS_KEYS[event.key()])
                return True
        return super().eventFilter(obj, event)

    def review_current(self, status: str) -> None:
        """Set the current gene's status, then make the next gene current."""
        row = self.table.currentRow()
        if not 0 <= row < self.table.rowCount():
            return
        self.table.cellWidget(row, 1).setCurrentIndex(STATUSES.index(status))
        if row + 1 < self.table.rowCount():
            self.table.setCurrentCell(row + 1, 0)


def column(header: str) -> int:
    """Index of a review-table column by its header (see :data:`REVIEW_HEADERS`)."""
    return REVIEW_HEADERS.index(header)


def _metric_item(row, header: str, value: float | None) -> QTableWidgetItem:
    text = "" if value is None else (f"{value:+.3f}" if header.startswith("Δ") else f"{value:.3f}")
    item = QTableWidgetItem(text)
    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
    if header in HE_COLS and value is not None:
        base, he = ("pcc", "pcc_he") if header == "ΔPCC" else ("rmse", "rmse_he")
        item.setToolTip(f"{base.upper()} {getattr(row, base):.3f} without H&E, {getattr(row, he):.3f} with H&E")
    return item
