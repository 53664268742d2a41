"""The dock's "Train" box: Train / Stop, Validate with its method, the progress bar, ETA line and loss plot.

It shows a :class:`~napari_s2s.gui.state.TrainingState`; the widget connects the buttons to the runs.
"""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from .loss_plot import LossPlot
from .messages import fmt_seconds
from .progress import ProgressBar
from .state import TrainingState


class WrappedLabel(QLabel):
    """A word-wrapped label never squeezed below the height its text needs at its width: in a
    scroll area's layout a plain wrapped label can be clipped mid-line when the panel is short; this
    one makes the panel scroll instead."""

    def __init__(self, text: str = ""):
        super().__init__(text)
        self.setWordWrap(True)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        super().setText(text)
        self._fit()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        need = self.heightForWidth(max(self.width(), 1))
        if need > 0 and need != self.minimumHeight():
            self.setMinimumHeight(need)


#: The Validate method list's last entry: it adds the ablations and controls to the list.
ALL_METHODS = "all methods…"


def validation_methods(include_ablations: bool = False) -> list[str]:
    """Registered imputation methods a user chooses between: ``s2s`` first, then its H&E-guided form
    and the baselines to compare with; with ``include_ablations``, the ablations and controls after
    them (methods marked ``ablation``, e.g. ``s2s-noaug``, ``he_gaussian-permuted``)."""
    from ..core.methods import load_all

    methods = load_all()
    main = [n for n, f in methods.items() if not getattr(f, "ablation", False)]
    first = [n for n in ("s2s", "s2s-he", "gaussian", "pca_gaussian", "he_gaussian") if n in main]
    out = first + sorted(n for n in main if n not in first)
    if include_ablations:
        out += sorted(n for n in methods if n not in out)
    return out


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
        self.method_combo.setToolTip(
            f"method to validate: s2s, or a method to compare with ('{ALL_METHODS}' adds the ablations)"
        )
        self._all_methods = False
        self._fill_methods()
        self.method_combo.activated.connect(self._on_method_chosen)
        self.method_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.method_combo.setMinimumContentsLength(5)
        row = QHBoxLayout()
        row.addWidget(self.validate_button, 1)
        row.addWidget(self.method_combo)
        lay.addLayout(row)
        self.progress_bar = ProgressBar()
        lay.addWidget(self.progress_bar)
        self.eta_label = WrappedLabel("")
        lay.addWidget(self.eta_label)
        self.loss_plot = LossPlot()
        self.loss_plot.setMinimumHeight(50)
        self.loss_plot.setMaximumHeight(80)
        lay.addWidget(self.loss_plot)

    def method(self) -> str:
        """The method Validate runs."""
        name = self.method_combo.currentText()
        return name if name and name != ALL_METHODS else "s2s"

    def show_all_methods(self) -> None:
        """Add the ablations and controls to the method list."""
        current = self.method()
        self._all_methods = True
        self._fill_methods()
        self.method_combo.setCurrentText(current)

    def _fill_methods(self) -> None:
        combo = self.method_combo
        combo.blockSignals(True)
        combo.clear()
        names = validation_methods(self._all_methods)
        main = validation_methods(False)
        combo.addItems([n for n in names if n in main])
        if self._all_methods:
            combo.insertSeparator(combo.count())
            combo.addItems([n for n in names if n not in main])
        else:
            combo.insertSeparator(combo.count())
            combo.addItem(ALL_METHODS)
        combo.blockSignals(False)

    def _on_method_chosen(self, index: int) -> None:
        if self.method_combo.itemText(index) == ALL_METHODS:
            self.show_all_methods()

    def set_buttons(
        self, ready: bool, running: bool, why: str = "", stopping: bool = False, final_maps: bool = False
    ) -> None:
        """Train / Validate when ``ready`` and idle (``why`` says why not, in their tooltips); Stop while
        a run can still be stopped (not once stopping, nor while the final maps are computed)."""
        self.train_button.setEnabled(ready and not running)
        self.validate_button.setEnabled(ready and not running)
        self.train_button.setToolTip(why or "train S2S-ST on this slide for the selected genes")
        self.validate_button.setToolTip(
            why
            or (
                "hold-out validation: hide 3/4 of the spots, predict them with the method, and show per-gene\n"
                "PCC/RMSE and error maps (a method that trains trains for the budget; predicting comes on top)"
            )
        )
        self.stop_button.setEnabled(running and not stopping and not final_maps)
        self.stop_button.setText("Stopping…" if running and stopping else "Stop")
        self.stop_button.setToolTip(
            "stopping: the final maps come from the best model so far"
            if running and stopping
            else "making the final maps: nearly done"
            if running and final_maps
            else "stop: keeps the best model so far and makes its maps in one pass (quick)"
        )

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
