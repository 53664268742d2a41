"""The dock's "Genes" box: search as you type, the selected genes, top-N variable genes, a pasted list.

The matching itself is :mod:`.gene_picker` (plain Python); this box shows it and holds the selection.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from .gene_picker import parse_gene_list, search_genes


class GenesBox(QGroupBox):
    """Gene search, selection list, top-N and paste.

    Parameters
    ----------
    notify
        ``notify(kind, message)`` shows a notification (unknown names of a pasted list).
    """

    #: The selection changed (any way: search, top-N, paste, remove, clear).
    genes_changed = Signal()
    #: The top-N spin box changed (a setting that persists).
    top_n_changed = Signal()

    def __init__(self, notify: Callable[[str, str], None], parent=None):
        super().__init__("Genes", parent)
        self._notify = notify
        self._slide = None
        self._genes: list[str] = []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        row = QHBoxLayout()
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("search genes…")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.textChanged.connect(self._on_search)
        self.search_edit.returnPressed.connect(self._add_matches)
        self.add_button = QPushButton("Add")
        self.add_button.setToolTip("add the selected matches (or the first one; Enter in the search does too)")
        self.add_button.clicked.connect(self._add_matches)
        self.paste_toggle = QPushButton("Paste…")
        self.paste_toggle.setCheckable(True)
        self.paste_toggle.setToolTip("paste a list of gene names")
        row.addWidget(self.search_edit, 1)
        row.addWidget(self.add_button)
        row.addWidget(self.paste_toggle)
        lay.addLayout(row)
        self.paste_edit = QPlainTextEdit()
        self.paste_edit.setPlaceholderText("paste gene names (comma, space or newline separated)")
        self.paste_edit.setMaximumHeight(60)
        self.paste_button = QPushButton("Use pasted list")
        self.paste_button.clicked.connect(lambda: self.apply_gene_list(self.paste_edit.toPlainText()))
        for w in (self.paste_edit, self.paste_button):
            w.setVisible(False)
            lay.addWidget(w)
        self.paste_toggle.toggled.connect(self.paste_edit.setVisible)
        self.paste_toggle.toggled.connect(self.paste_button.setVisible)
        self.match_list = QListWidget()
        self.match_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.match_list.setMaximumHeight(56)
        self.match_list.setToolTip("matches: double-click one to add it")
        self.match_list.itemDoubleClicked.connect(lambda item: self.add_genes([item.text()]))
        lay.addWidget(self.match_list)

        row = QHBoxLayout()
        self.selected_label = QLabel("Selected:")
        row.addWidget(self.selected_label, 1)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("remove the genes selected below")
        self.remove_button.clicked.connect(self._remove_selected)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(lambda: self.set_genes([]))
        row.addWidget(self.remove_button)
        row.addWidget(self.clear_button)
        lay.addLayout(row)
        self.selected_list = QListWidget()
        self.selected_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.selected_list.setMaximumHeight(76)
        lay.addWidget(self.selected_list)

        row = QHBoxLayout()
        self.top_n_spin = QSpinBox()
        self.top_n_spin.setRange(1, 500)
        self.top_n_spin.setValue(8)
        self.top_n_spin.valueChanged.connect(lambda *_: self.top_n_changed.emit())
        self.top_n_button = QPushButton("Top-N variable")
        self.top_n_button.setToolTip("the N genes with the highest variance (detected in >= 10 % of spots)")
        self.top_n_button.clicked.connect(self.use_top_genes)
        row.addWidget(self.top_n_spin)
        row.addWidget(self.top_n_button, 1)
        lay.addLayout(row)

        self.unknown_label = QLabel("")
        self.unknown_label.setWordWrap(True)
        self.unknown_label.setStyleSheet("color: #f0a050")
        self.unknown_label.setVisible(False)
        lay.addWidget(self.unknown_label)

    # ------------------------------------------------------------------ the slide whose genes are picked
    def set_slide(self, slide) -> None:
        """Search the genes of ``slide`` (``None``: no slide)."""
        self._slide = slide
        self._show_unknown("")
        self._on_search(self.search_edit.text())

    # ------------------------------------------------------------------ selection
    def selected_genes(self) -> list[str]:
        return list(self._genes)

    def set_genes(self, genes) -> None:
        """Replace the selection (names must be the slide's)."""
        self._genes = []
        self.add_genes(genes)

    def add_genes(self, genes) -> None:
        self._show_unknown("")  # the note is about the last pasted list: any other change ends it
        for g in genes:
            if g not in self._genes:
                self._genes.append(g)
        self.selected_list.clear()
        self.selected_list.addItems(self._genes)
        self.selected_label.setText(f"Selected ({len(self._genes)}):")
        self.genes_changed.emit()

    def use_top_genes(self) -> None:
        """Select the top-N variable genes of the slide (N from the spin box)."""
        slide = self._slide
        if slide is None:
            return
        n = int(self.top_n_spin.value())
        genes = slide.top_variable_genes(n)
        self.set_genes(genes or [str(g) for g in slide.genes[:n]])

    def apply_gene_list(self, text: str) -> None:
        """Select the genes of a pasted list; unknown names are reported with close matches."""
        slide = self._slide
        if slide is None:
            return
        parsed = parse_gene_list(text, slide.genes)
        self.set_genes(parsed.found)
        report = parsed.report()
        self._show_unknown(report)
        if report:
            self._notify("warning", report)

    def _show_unknown(self, report: str) -> None:
        self.unknown_label.setText(report)
        self.unknown_label.setVisible(bool(report))

    def _remove_selected(self) -> None:
        drop = {item.text() for item in self.selected_list.selectedItems()}
        self.set_genes([g for g in self._genes if g not in drop])

    def _on_search(self, text: str) -> None:
        self.match_list.clear()
        if self._slide is None:
            return
        self.match_list.addItems(search_genes(self._slide.genes, text, limit=200))
        if self.match_list.count():
            self.match_list.setCurrentRow(0)

    def _add_matches(self) -> None:
        items = self.match_list.selectedItems() or ([self.match_list.item(0)] if self.match_list.count() else [])
        self.add_genes([i.text() for i in items])
