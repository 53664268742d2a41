"""The "Review" panel: a table of genes with accept / flag / comment and their metrics.

The model is :class:`~napari_s2s.gui.review.ReviewTable` (plain Python, CSV in and out); this view
shows it, writes edits back to it, and offers "Load…" and "Export CSV…". The dock widget puts it in a
dock widget of its own ("S2S-ST review"), where it gets the height a review needs.

Layout: Gene and Status never scroll away (the table has no horizontal scroll bar; the Comment
column takes what width is left) and the current gene's comment is also shown, and edited, in a
full-width field under the table, readable at any dock width. Keys: A / F / U review the current
gene and move to the next, unless the current cell is one a user types into (Comment): typing there
edits it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QStyledItemDelegate,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .review import STATUSES, ReviewTable

#: Metric columns of the review table: header -> ``GeneReview`` attribute. The ``Δ`` columns (the
#: H&E-guided counterpart on the same hold-out task minus the plain method) show only when a
#: validation ran both; the guided values themselves (``+H&E``) stay hidden to keep the table narrow
#: (they are in the Δ cells' tooltips and in the exported CSV).
METRIC_COLS = {
    "PCC": "pcc",
    "ΔPCC": "dpcc",
    "RMSE": "rmse",
    "ΔRMSE": "drmse",
    "PCC +H&E": "pcc_he",
    "RMSE +H&E": "rmse_he",
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
#: What the Status column shows (and its combo box offers) for each of :data:`~napari_s2s.gui.review.STATUSES`.
STATUS_LABELS = ("—", "accept", "flag")
#: Column of the review table holding the status.
STATUS_COL = 1
#: Width (px) the Comment column keeps at least, and the widest the panel asks for to give it that.
COMMENT_MIN_WIDTH = 100
MAX_PANEL_WIDTH = 480
#: Review keys in the table: status of the current gene, then the next gene.
STATUS_KEYS = {Qt.Key.Key_A: "accepted", Qt.Key.Key_F: "flagged", Qt.Key.Key_0: "", Qt.Key.Key_U: ""}


class ReviewPanel(QWidget):
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
        open_blinded: Callable[[], None] | None = None,
    ):
        super().__init__(parent)
        self._min_width = 0
        self.review = ReviewTable()
        self._on_gene_clicked = on_gene_clicked
        self._notify = notify
        self._start_dir = start_dir
        self._known_genes = known_genes
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.summary = QLabel("no genes to review yet: train, validate or open a saved result")
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)
        self.table = QTableWidget(0, len(REVIEW_HEADERS))
        self.table.setHorizontalHeaderLabels(REVIEW_HEADERS)
        for c, header in enumerate(REVIEW_HEADERS):
            tip = HEADER_TIPS.get(header)
            if tip:
                self.table.horizontalHeaderItem(c).setToolTip(tip)
            if header in HIDDEN_COLS:
                self.table.setColumnHidden(c, True)
        self.table.verticalHeader().setVisible(False)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # Gene and Status stay
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectItems)
        self.table.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked
            | QAbstractItemView.EditTrigger.EditKeyPressed
            | QAbstractItemView.EditTrigger.AnyKeyPressed
            | QAbstractItemView.EditTrigger.SelectedClicked
        )
        head = self.table.horizontalHeader()
        head.setStretchLastSection(False)
        head.setMinimumSectionSize(24)
        for c in range(COMMENT_COL):
            head.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        head.setSectionResizeMode(COMMENT_COL, QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(120)
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.table.setItemDelegateForColumn(STATUS_COL, StatusDelegate(self.table))
        self.table.itemChanged.connect(self._on_item)
        self.table.cellClicked.connect(self._on_click)
        self.table.currentCellChanged.connect(self._on_current)
        self.table.installEventFilter(self)
        self.table.setToolTip(
            "keys: A accept, F flag, U (or 0) undo, then the next gene; the gene slider follows the row.\n"
            "Typing in a Comment cell edits the comment."
        )
        lay.addWidget(self.table, 1)
        self.comment_edit = QLineEdit()
        self.comment_edit.setPlaceholderText("comment on the current gene (Enter saves)")
        self.comment_edit.setClearButtonEnabled(True)
        self.comment_edit.setEnabled(False)
        self.comment_edit.returnPressed.connect(self._comment_entered)
        lay.addWidget(self.comment_edit)
        row = QHBoxLayout()
        self.load_button = QPushButton("Load…")
        self.load_button.setToolTip("continue a review: statuses and comments of a review CSV exported before")
        self.load_button.clicked.connect(self._load_dialog)
        row.addWidget(self.load_button)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("save the review (status, comment, metrics per gene) as CSV")
        self.export_button.clicked.connect(self._export_dialog)
        row.addWidget(self.export_button)
        self.blinded_button = QPushButton("Blinded…")
        self.blinded_button.setToolTip(
            "blinded reading: two maps per gene side by side with the methods' names hidden, several readers, "
            "agreement statistics and an HTML report (opens the 'Blinded reading' dock)"
        )
        self.blinded_button.setVisible(open_blinded is not None)
        if open_blinded is not None:
            self.blinded_button.clicked.connect(open_blinded)
        row.addWidget(self.blinded_button)
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
            status = QTableWidgetItem(STATUS_LABELS[STATUSES.index(row.status)])
            status.setToolTip("double-click to choose; keys A accept, F flag, U undo")
            t.setItem(r, STATUS_COL, status)
            comment = QTableWidgetItem(row.comment)
            comment.setToolTip(row.comment)
            t.setItem(r, COMMENT_COL, comment)
            for header, attr in METRIC_COLS.items():
                t.setItem(r, column(header), _metric_item(row, header, getattr(row, attr)))
        rows = list(self.review.rows.values())
        with_he = any(row.pcc_he is not None or row.rmse_he is not None for row in rows)
        for header in HE_COLS:
            t.setColumnHidden(column(header), not with_he)
        with_metrics = any(row.pcc is not None or row.rmse is not None for row in rows)
        for header in ("PCC", "RMSE"):  # a saved result has none: the comments get the room
            t.setColumnHidden(column(header), not with_metrics)
        t.blockSignals(False)
        self._update_summary()
        self._show_comment(t.currentRow())
        self._fit_width()

    def _fit_width(self) -> None:
        """At least as wide as the shown columns plus a readable Comment column (no sideways scroll)."""
        t = self.table
        for c in range(COMMENT_COL):  # (the Comment column stretches over what is left)
            t.resizeColumnToContents(c)
        used = sum(t.columnWidth(c) for c in range(COMMENT_COL) if not t.isColumnHidden(c))
        frame = 2 * t.frameWidth() + t.verticalScrollBar().sizeHint().width() + 12
        self._fitting = True
        try:
            self.setMinimumWidth(max(self._min_width, min(MAX_PANEL_WIDTH, used + COMMENT_MIN_WIDTH + frame)))
        finally:
            self._fitting = False

    def setMinimumWidth(self, width: int) -> None:  # noqa: N802 (Qt name)
        """The narrowest the panel may be (it may ask for more, see :meth:`refresh`)."""
        if not getattr(self, "_fitting", False):
            self._min_width = width
        super().setMinimumWidth(width)

    def _update_summary(self) -> None:
        rows = list(self.review.rows.values())
        if not rows:
            self.summary.setText("no genes to review yet: train, validate or open a saved result")
            return
        acc = sum(r.status == "accepted" for r in rows)
        flag = sum(r.status == "flagged" for r in rows)
        self.summary.setText(
            f"{self.review.slide or 'slide'}: {len(rows)} genes, {acc} accepted, {flag} flagged, "
            f"{len(rows) - acc - flag} to review · keys A accept, F flag, U undo"
        )

    def set_review(self, gene: str, status: str | None = None, comment: str | None = None) -> None:
        """Review a gene (as the table's combo box and comment cell do)."""
        row = list(self.review.rows).index(gene)
        if status is not None:
            self.table.item(row, STATUS_COL).setText(STATUS_LABELS[STATUSES.index(status)])  # -> _on_item
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
        if loaded.slide and loaded.slide not in self.review.names():
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
    def _set_status(self, gene: str, index: int) -> None:
        self.review.set_status(gene, STATUSES[index])
        self._update_summary()

    def _on_item(self, item: QTableWidgetItem) -> None:
        if item.column() == STATUS_COL and item.text() in STATUS_LABELS:
            self._set_status(self.table.item(item.row(), 0).text(), STATUS_LABELS.index(item.text()))
        elif item.column() == COMMENT_COL:
            gene = self.table.item(item.row(), 0).text()
            self.review.set_comment(gene, item.text())
            item.setToolTip(self.review.rows[gene].comment)
            if item.row() == self.table.currentRow():
                self._show_comment(item.row())

    def _on_click(self, row: int, col: int) -> None:
        if col == 0:
            self._on_gene_clicked(self.table.item(row, 0).text())

    def _on_current(self, row: int, col: int, prev_row: int = -1, *_) -> None:
        if 0 <= row < self.table.rowCount() and self.table.item(row, 0) is not None:
            if row != prev_row:
                self._on_gene_clicked(self.table.item(row, 0).text())
        self._show_comment(row)

    def current_gene(self) -> str | None:
        """The gene of the table's current row, or ``None``."""
        row = self.table.currentRow()
        item = self.table.item(row, 0) if 0 <= row < self.table.rowCount() else None
        return None if item is None else item.text()

    def _show_comment(self, row: int) -> None:
        gene = self.table.item(row, 0).text() if 0 <= row < self.table.rowCount() else None
        self.comment_edit.setEnabled(gene is not None)
        self.comment_edit.setPlaceholderText(
            f"comment on {gene} (Enter saves)" if gene else "comment on the current gene (Enter saves)"
        )
        if not self.comment_edit.hasFocus() or gene is None:
            self.comment_edit.setText(self.review.rows[gene].comment if gene in self.review.rows else "")

    def _comment_entered(self) -> None:
        row = self.table.currentRow()
        if 0 <= row < self.table.rowCount():
            self.table.item(row, COMMENT_COL).setText(self.comment_edit.text())  # -> the model, via _on_item
            self.table.setFocus()  # review keys work again

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        """A / F / U keys review the current gene and move to the next, unless a cell editor would take
        the key (editing, or the current cell is an editable one: typing in a Comment cell edits it)."""
        if obj is self.table and event.type() == QEvent.Type.KeyPress and event.key() in STATUS_KEYS:
            if not self._cell_takes_text() and event.modifiers() in (
                Qt.KeyboardModifier.NoModifier,
                Qt.KeyboardModifier.KeypadModifier,
            ):
                self.review_current(STATUS_KEYS[event.key()])
                return True
        return super().eventFilter(obj, event)

    def _cell_takes_text(self) -> bool:
        """Whether a key would go to a cell editor: while editing, or on an editable text cell (the
        Status cell is the review keys' own: they act there)."""
        if self.table.state() == QAbstractItemView.State.EditingState:
            return True
        item = self.table.currentItem()
        return item is not None and item.column() != STATUS_COL and bool(item.flags() & Qt.ItemFlag.ItemIsEditable)

    def review_current(self, status: str) -> None:
        """Set the current gene's status, then make the next gene current."""
        row = self.table.currentRow()
        if not 0 <= row < self.table.rowCount():
            return
        self.table.item(row, STATUS_COL).setText(STATUS_LABELS[STATUSES.index(status)])
        if row + 1 < self.table.rowCount():
            self.table.setCurrentCell(row + 1, 0)


class StatusDelegate(QStyledItemDelegate):
    """The Status cells are text (narrow, cheap); editing one shows a combo box of :data:`STATUS_LABELS`."""

    def createEditor(self, parent, option, index):  # noqa: N802 (Qt name)
        combo = QComboBox(parent)
        combo.addItems(list(STATUS_LABELS))
        combo.activated.connect(lambda *_: (self.commitData.emit(combo), self.closeEditor.emit(combo)))
        return combo

    def setEditorData(self, editor, index):  # noqa: N802 (Qt name)
        text = index.data()
        editor.setCurrentIndex(STATUS_LABELS.index(text) if text in STATUS_LABELS else 0)

    def setModelData(self, editor, model, index):  # noqa: N802 (Qt name)
        model.setData(index, editor.currentText())


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
