"""The dock's "Train" box: Train / Stop, Validate with its method, the progress bar, ETA line and loss plot.

It shows a :class:`~napari_s2s.gui.state.TrainingState`; the widget connects the buttons to the runs.
"""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from .loss_plot import LossPlot
from .progress import ProgressBar
from .messages import fmt_seconds
from .state import TrainingState


def validation_methods() -> list[str]:
    """Registered imputation methods, ``s2s`` first (the others are there to compare with)."""
    from ..core.methods import load_all

    names = [n for n in load_all() if not n.endswith("-permuted")]
    first = [n for n in ("s2s", "s2s-he", "gaussian", "pca_gaussian") if n in names]
    return first + sorted(n for n in names if n not in first)


class TrainBox(QGroupBox):
    """Run controls and progress."""

    def __init__(self, parent=None):
        super().__init__("Train", parent)
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.train_button = QPushButton("Train")
        self.train_button.setToolTip("train S2S-ST on this slide and impute the selected genes")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("stop: keeps the last good model and still produces maps")
        row.addWidget(self.train_button)
        row.addWidget(self.stop_button)
        lay.addLayout(row)
        self.validate_button = QPushButton("Validate")
        self.validate_button.setToolTip(
            "hide 3/4 of the spots, predict them from the rest, and show per-gene PCC/RMSE and error maps"
        )
        self.method_combo = QComboBox()
        self.method_combo.addItems(validation_methods())
        self.method_combo.setToolTip("method to validate (s2s, or a baseline to compare with)")
        self.method_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.method_combo.setMinimumContentsLength(5)
        row = QHBoxLayout()
        row.addWidget(self.validate_button, 1)
        row.addWidget(self.method_combo)
        lay.addLayout(row)
        self.progress_bar = ProgressBar()
        lay.addWidget(self.progress_bar)
        self.eta_label = QLabel("")
        self.eta_label.setWordWrap(True)
        lay.addWidget(self.eta_label)
        self.loss_plot = LossPlot()
        lay.addWidget(self.loss_plot)

    def method(self) -> str:
        """The method Validate runs."""
        return self.method_combo.currentText() or "s2s"

    def set_buttons(self, ready: bool, running: bool, why: str = "") -> None:
        """Train / Validate when ``ready`` and idle (``why`` says why not, in their tooltips); Stop while running."""
        self.train_button.setEnabled(ready and not running)
        self.validate_button.setEnabled(ready and not running)
        self.train_button.setToolTip(why or "train S2S-ST on this slide for the selected genes")
        self.validate_button.setToolTip(why or "hold-out validation: hide 3/4 of the spots and score the method")
        self.stop_button.setEnabled(running)

    def show_state(self, st: TrainingState) -> None:
        """The progress bar, ETA line and loss plot of ``st``."""
        frac = 1.0 if st.phase == "done" else st.fraction()
        text = st.phase if frac is None else f"{st.phase} {100 * frac:.0f}%"
        self.progress_bar.set_progress(frac if frac is not None else (0.0 if not st.running else None), text)
        bits = []
        if st.running and st.max_steps:
            bits.append(f"step {st.step}/{st.max_steps}")
        if st.running and st.eta_s is not None:
            bits.append(f"ETA {fmt_seconds(st.eta_s)}")
        if st.elapsed_s and st.running:  # when done, the message says how long it took
            bits.append(f"{fmt_seconds(st.elapsed_s)} elapsed")
        if st.message:
            bits.append(st.message)
        self.eta_label.setText(" · ".join(bits))
        self.loss_plot.set_points(st.losses)
