""" "Unblind…" of the "Blinded reading" dock: the merged statistics of a session's readers, and the report.

The numbers are :func:`napari_s2s.core.review.stats.merge` shown through the same text cells as
``napari-s2s session stats`` (:func:`~napari_s2s.core.review.stats.summary_rows`); "Save report…" writes
:func:`napari_s2s.core.review.report.write_report` in a background thread.
"""

from __future__ import annotations

import html
from pathlib import Path

from qtpy.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from . import workers


class UnblindDialog(QDialog):
    """Which arm readers preferred, gene by gene (this names the arms: not for readers' eyes)."""

    def __init__(self, session, readers, maps=None, parent=None):
        from ..core.review.stats import agreement_line, merge, summary_columns, summary_rows

        super().__init__(parent)
        self.session, self.readers, self.maps = session, readers, maps
        self.summary = merge(session, readers)
        self.worker = None
        self.written: Path | None = None
        self.setWindowTitle(f"Unblinded: {session.path.name if session.path else 'session'}")
        self.resize(900, 480)
        lay = QVBoxLayout(self)
        who = ", ".join(f"{r['reader']} ({r['answered']}/{r['of']})" for r in self.summary["readers"]) or "none yet"
        head = QLabel(f"<b>{html.escape(' vs '.join(self.summary['arms']))}</b> &nbsp; readers: {html.escape(who)}")
        head.setWordWrap(True)
        lay.addWidget(head)
        cols, rows = summary_columns(self.summary), summary_rows(self.summary)
        self.table = QTableWidget(len(rows), len(cols))
        self.table.setHorizontalHeaderLabels(cols)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        lay.addWidget(self.table)
        self.agreement_label = QLabel(agreement_line(self.summary))
        lay.addWidget(self.agreement_label)
        note = QLabel(
            "95% Wilson intervals; p: binomial test of the two arms among answers that picked one. "
            "Same numbers as 'napari-s2s session stats'."
        )
        note.setWordWrap(True)
        lay.addWidget(note)
        row = QHBoxLayout()
        self.report_button = QPushButton("Save report (HTML)…")
        self.report_button.clicked.connect(self._report_dialog)
        row.addWidget(self.report_button)
        self.status = QLabel("")
        row.addWidget(self.status, 1)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        row.addWidget(close)
        lay.addLayout(row)

    def cell(self, row: int, col: int) -> str:
        return self.table.item(row, col).text()

    def _report_dialog(self) -> None:
        start = str(self.session.folder / f"{self.session.path.stem if self.session.path else 'review'}_report.html")
        path, _ = QFileDialog.getSaveFileName(self, "Save the report", start, "HTML (*.html)")
        if path:
            self.save_report(path)

    def save_report(self, path: str | Path) -> None:
        """Write the HTML report (in a background thread); :attr:`written` is its path when done."""
        if self.worker is not None:
            return

        def run():
            from ..core.review.report import write_report

            yield write_report(self.session, self.readers, path, maps=self.maps)

        self.report_button.setEnabled(False)
        self.status.setText("drawing the maps of every gene…")
        self.worker = workers.start(run, self._on_yield, self._on_error, self._on_finished)

    def _on_yield(self, written) -> None:
        self.written = Path(written)
        self.status.setText(f"saved {self.written}")

    def _on_error(self, exc: BaseException) -> None:
        text = str(exc).strip().splitlines()
        self.status.setText(
            f"<span style='color:#e06c75'>{html.escape(text[0] if text else type(exc).__name__)}</span>"
        )

    def _on_finished(self) -> None:
        self.worker = None
        self.report_button.setEnabled(True)
