"""The dock's "Results" box: side by side, what imputed maps show at measured spots, Save."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from qtpy.QtWidgets import QCheckBox, QFileDialog, QGroupBox, QPushButton, QVBoxLayout

from .messages import one_line


class ResultsBox(QGroupBox):
    """Display options of the imputed maps and saving them.

    Parameters
    ----------
    save
        ``save(path) -> written path`` (raises ``ValueError``/``OSError`` with a one-line message).
    default_path
        Where the Save dialog starts (folder and file name).
    notify
        ``notify(kind, message)`` shows a notification.
    """

    def __init__(
        self,
        save: Callable[[str], str],
        default_path: Callable[[], str],
        notify: Callable[[str, str], None],
        parent=None,
    ):
        super().__init__("Results", parent)
        self._save = save
        self._default_path = default_path
        self._notify = notify
        lay = QVBoxLayout(self)
        self.side_by_side_check = QCheckBox("Side by side")
        self.side_by_side_check.setToolTip(
            "measured | imputed in a napari grid, the H&E under each, one contrast per gene"
        )
        lay.addWidget(self.side_by_side_check)
        self.model_at_spots_check = QCheckBox("Model output at spots")
        self.model_at_spots_check.setToolTip(
            "Display only. Off: the imputed maps keep the measured values exactly at measured spots, which\n"
            "can look like dots beside the smoother predictions. On: they show the network's output there too.\n"
            "Saved results always keep the measured values in X (the model output is the 's2s_model' layer)."
        )
        lay.addWidget(self.model_at_spots_check)
        self.save_button = QPushButton("Save imputed .h5ad…")
        self.save_button.clicked.connect(self._save_dialog)
        lay.addWidget(self.save_button)

    def display_source(self) -> str:
        """What imputed maps show at measured spots: ``"values"`` (measured, exact) or ``"model"``."""
        return "model" if self.model_at_spots_check.isChecked() else "values"

    def set_savable(self, ok: bool) -> None:
        self.save_button.setEnabled(ok)

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save imputed maps", self._default_path(), "AnnData (*.h5ad)")
        if not path:
            return
        try:
            written = self._save(path)
        except (ValueError, OSError) as exc:
            self._notify("error", one_line(exc))
            return
        self._notify("info", f"saved {Path(written)}")

