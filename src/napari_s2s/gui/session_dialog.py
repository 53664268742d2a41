""" "New session…" of the "Blinded reading" dock: make a review session without the command line.

The same choices as ``napari-s2s session create``: two methods imputed now, two result files, or a
hold-out validation run. The work (:func:`napari_s2s.core.review.create.create_session`) runs in a
background thread; the dialog shows one line of progress and closes with the session's path in
:attr:`NewSessionDialog.created`.
"""

from __future__ import annotations

import html
from pathlib import Path

from qtpy.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from . import workers
from .layers import s2s_meta

#: Kinds of sessions the dialog makes: label -> key.
MODES = {
    "two methods, imputed now": "methods",
    "two result files (.h5ad)": "compare",
    "hold-out validation (a method vs the measured values)": "holdout",
}


def method_names() -> list[str]:
    """Methods that can impute a slide's dense grid for a session (``s2s`` first)."""
    from ..core.methods import load_all

    names = [n for n in load_all() if not n.endswith("-permuted") and n not in ("dist",)]
    names = [n for n in names if not n.startswith("s2s-") or n == "s2s-he"]
    first = [n for n in ("s2s", "gaussian", "s2s-he", "he_gaussian", "pca_gaussian") if n in names]
    return first + sorted(n for n in names if n not in first)


def viewer_slide_path(viewer) -> str:
    """The source of the last measured slide opened in the viewer (not a saved result), or ``""``."""
    for layer in reversed(list(viewer.layers)):
        m = s2s_meta(layer)
        if m and m.get("source") and m.get("kind") in ("measured", "he"):
            slide = m.get("slide")
            if slide is not None and getattr(slide, "is_imputed_result", False):
                continue
            return str(m["source"])
    return ""


class _PathRow(QWidget):
    def __init__(self, placeholder: str, pick, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        lay.addWidget(self.edit, 1)
        b = QPushButton("…")
        b.setMaximumWidth(28)
        b.clicked.connect(lambda: pick(self.edit))
        lay.addWidget(b)

    def text(self) -> str:
        return self.edit.text().strip()

    def setText(self, text: str) -> None:  # noqa: N802 (Qt style)
        self.edit.setText(text)


class NewSessionDialog(QDialog):
    """Make a review session file (see the module docstring)."""

    def __init__(self, viewer, parent=None):
        super().__init__(parent)
        self.setWindowTitle("New blinded review session")
        self.created: Path | None = None
        self.worker = None
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(list(MODES))
        self.mode_combo.currentIndexChanged.connect(self._on_mode)
        form.addRow("Compare", self.mode_combo)
        self.slide_row = _PathRow("slide (.h5ad or Space Ranger outs/)", self._pick_open)
        self.slide_row.setText(viewer_slide_path(viewer))
        form.addRow("Slide", self.slide_row)
        methods = method_names()
        self.method_a = QComboBox()
        self.method_a.addItems(methods)
        self.method_b = QComboBox()
        self.method_b.addItems(methods)
        if "gaussian" in methods:
            self.method_b.setCurrentText("gaussian")
        self.method_a_label = QLabel("Method A")
        form.addRow(self.method_a_label, self.method_a)
        self.method_b_label = QLabel("Method B")
        form.addRow(self.method_b_label, self.method_b)
        self.against_combo = QComboBox()
        self.against_combo.addItems(["the measured values", *methods])
        self.against_label = QLabel("against")
        form.addRow(self.against_label, self.against_combo)
        self.result_a = _PathRow("result A (.h5ad)", self._pick_open)
        self.result_b = _PathRow("result B (.h5ad)", self._pick_open)
        self.result_a_label, self.result_b_label = QLabel("Result A"), QLabel("Result B")
        form.addRow(self.result_a_label, self.result_a)
        form.addRow(self.result_b_label, self.result_b)
        self.genes_edit = QLineEdit("top:20")
        self.genes_edit.setToolTip("gene names separated by commas, or top:N (the N most variable)")
        form.addRow("Genes", self.genes_edit)
        self.budget_spin = QDoubleSpinBox()
        self.budget_spin.setRange(1, 3600)
        self.budget_spin.setValue(60)
        self.budget_spin.setSuffix(" s")
        self.budget_spin.setToolTip("training budget of learned methods (s2s), per method")
        form.addRow("Budget", self.budget_spin)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        form.addRow("Seed", self.seed_spin)
        self.title_edit = QLineEdit()
        self.title_edit.setPlaceholderText("shown to readers: keep the methods out of it")
        form.addRow("Title", self.title_edit)
        self.out_row = _PathRow("session file to write (.json)", self._pick_save)
        form.addRow("Save as", self.out_row)
        lay.addLayout(form)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setVisible(False)
        lay.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.create_button = self.buttons.addButton("Create", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.create)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)
        self._on_mode()

    def mode(self) -> str:
        return MODES[self.mode_combo.currentText()]

    def _on_mode(self, *_) -> None:
        m = self.mode()
        for w in (self.method_a, self.method_a_label):
            w.setVisible(m in ("methods", "holdout"))
        self.method_a_label.setText("Method" if m == "holdout" else "Method A")
        for w in (self.method_b, self.method_b_label):
            w.setVisible(m == "methods")
        for w in (self.against_combo, self.against_label):
            w.setVisible(m == "holdout")
        for w in (self.result_a, self.result_b, self.result_a_label, self.result_b_label):
            w.setVisible(m == "compare")

    def _pick_open(self, edit: QLineEdit) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a file", edit.text(), "AnnData (*.h5ad);;All files (*)")
        if path:
            edit.setText(path)

    def _pick_save(self, edit: QLineEdit) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the session as", edit.text() or "review.json", "Review session (*.json)"
        )
        if path:
            edit.setText(path if path.endswith(".json") else path + ".json")

    def arguments(self) -> dict:
        """Keyword arguments of :func:`~napari_s2s.core.review.create.create_session` from the form."""
        m = self.mode()
        genes = self.genes_edit.text().strip() or None
        kw = {
            "out": self.out_row.text(),
            "slide": self.slide_row.text() or None,
            "genes": genes,
            "seed": self.seed_spin.value(),
            "budget_s": self.budget_spin.value(),
            "title": self.title_edit.text(),
        }
        if m == "methods":
            kw["methods"] = [self.method_a.currentText(), self.method_b.currentText()]
        elif m == "compare":
            kw["compare"] = [self.result_a.text(), self.result_b.text()]
        else:
            against = self.against_combo.currentText()
            kw["holdout"] = [self.method_a.currentText()] + ([] if against == "the measured values" else [against])
        return kw

    def create(self) -> None:
        """Check the form and make the session in a background thread."""
        kw = self.arguments()
        if not kw["out"]:
            self.status.setText("choose where to save the session (Save as)")
            return
        if self.worker is not None:
            return

        def run():
            from ..core.review.create import create_session

            yield "working"
            yield create_session(**kw)

        self.create_button.setEnabled(False)
        self.progress.setVisible(True)
        self.status.setText("making the session… (learned methods train for up to the budget each)")
        self.worker = workers.start(run, self._on_yield, self._on_error, self._on_finished)

    def _on_yield(self, item) -> None:
        if not isinstance(item, str):
            self.created = Path(item.path)

    def _on_error(self, exc: BaseException) -> None:
        text = str(exc).strip().splitlines()
        self.status.setText(
            f"<span style='color:#e06c75'>{html.escape(text[0] if text else type(exc).__name__)}</span>"
        )

    def _on_finished(self) -> None:
        self.worker = None
        self.progress.setVisible(False)
        self.create_button.setEnabled(True)
        if self.created is not None:
            self.accept()
