"""The dock's "Results" box: side by side, what imputed maps show at measured spots, Save."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qtpy.QtWidgets import QCheckBox, QFileDialog, QGridLayout, QGroupBox, QPushButton

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
        lay = QGridLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setHorizontalSpacing(4)
        self.side_by_side_check = QCheckBox("Side by side")
        self.side_by_side_check.setToolTip(
            "measured | imputed in a napari grid, the H&E under each, one contrast per gene"
        )
        lay.addWidget(self.side_by_side_check, 0, 0)
        self.model_at_spots_check = QCheckBox("Model at spots")
        self.model_at_spots_check.setToolTip(
            "Show the model's output at measured spots. Display only. Off: the imputed maps keep the\n"
            "measured values exactly at measured spots, which can look like dots beside the smoother\n"
            "predictions. On: they show the network's output there too. Saved results always keep the\n"
            "measured values in X (the model output is the 's2s_model' layer)."
        )
        lay.addWidget(self.model_at_spots_check, 0, 1)
        self.save_button = QPushButton("Save .h5ad…")
        self.save_button.clicked.connect(self._save_dialog)
        lay.addWidget(self.save_button, 1, 0)
        self.review_button = QPushButton("Review table")
        self.review_button.setToolTip("the review table: accept / flag / comment per gene, metrics, CSV")
        lay.addWidget(self.review_button, 1, 1)

    def display_source(self) -> str:
        """What imputed maps show at measured spots: ``"values"`` (measured, exact) or ``"model"``."""
        return "model" if self.model_at_spots_check.isChecked() else "values"

    def set_savable(self, why_not: str = "") -> None:
        """Save is enabled unless ``why_not`` says why (shown in its tooltip, as a disabled button
        cannot say anything else)."""
        self.save_button.setEnabled(not why_not)
        self.save_button.setToolTip(
            f"cannot save: {why_not}"
            if why_not
            else "save the imputed maps as .h5ad (measured values kept exactly, with provenance)"
        )

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
