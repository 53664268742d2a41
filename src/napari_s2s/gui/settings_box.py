"""The dock's "Settings" box: preset, budget, device, H&E guidance; natural images, seed and model size under "Advanced".

What the settings mean and how they persist is :mod:`.settings` (plain Python); this box shows them.
"""

from __future__ import annotations

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QSpinBox,
    QWidget,
)
from superqt import QCollapsible

from .settings import DEVICES, HISTOLOGY_MODES, MAX_AUX_GENES, PRESETS, WidgetSettings


def available_devices() -> list[str]:
    """Devices torch can use here (``core.s2s.device.available_devices``; ``["cpu"]`` as a fallback)."""
    try:
        from ..core.s2s.device import available_devices as _avail
    except ImportError:
        return ["cpu"]
    try:
        return [str(d) for d in _avail()]
    except Exception:  # noqa: BLE001 - a broken CUDA install must not break the widget
        return ["cpu"]


def form_layout(box: QWidget) -> QFormLayout:
    """A form that wraps long rows and lets fields grow (narrow docks)."""
    form = QFormLayout(box)
    form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    return form


class SettingsBox(QGroupBox):
    """The training settings of :class:`~napari_s2s.gui.settings.WidgetSettings` as controls."""

    #: Any setting changed (by the user; not while :meth:`load` runs).
    changed = Signal()

    def __init__(self, parent=None):
        super().__init__("Settings", parent)
        self._loading = False
        form = form_layout(self)
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(list(PRESETS))
        self.preset_combo.setToolTip("fast: small model, seconds on CPU; paper: the published model size")
        form.addRow("Preset", self.preset_combo)
        self.budget_spin = QDoubleSpinBox()
        self.budget_spin.setRange(1.0, 24 * 3600.0)
        self.budget_spin.setDecimals(0)
        self.budget_spin.setSuffix(" s")
        self.budget_spin.setToolTip(
            "Train: the whole wait, from the click to the final maps (preparing, training, previews, final\n"
            "imputation; drawing the maps is not included, and at least one step and one pass always run).\n"
            "Validate: the training time of a method that trains (s2s, dist); predicting comes on top."
        )
        form.addRow("Budget", self.budget_spin)
        self.device_combo = QComboBox()
        self.device_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.device_combo.setMinimumContentsLength(8)
        avail = available_devices()
        self.accelerators = [d for d in avail if d in ("cuda", "mps")]
        auto = next((d for d in ("cuda", "mps") if d in avail), "cpu")
        for dev in DEVICES:
            ok = dev == "auto" or dev in avail
            label = f"auto ({auto})" if dev == "auto" else (dev if ok else f"{dev} (not available)")
            self.device_combo.addItem(label, dev)
            self.device_combo.model().item(self.device_combo.count() - 1).setEnabled(ok)
        form.addRow("Device", self.device_combo)
        self.preset_note = QLabel("")
        self.preset_note.setWordWrap(True)
        self.preset_note.setStyleSheet("color: #e0b050")
        self.preset_note.setVisible(False)
        form.addRow(self.preset_note)
        self.histology_combo = QComboBox()
        for mode in HISTOLOGY_MODES:
            self.histology_combo.addItem(mode, mode)
        self.histology_combo.setToolTip(
            "H&E guidance: the base predictor S2S starts from may add a term of per-spot H&E features.\n"
            "auto (default): tried when the slide has an image with >= 4 pixels per spot, kept where\n"
            "cross-validation on the measured spots says it helps; on: always; off: never."
        )
        form.addRow("H&&E guidance", self.histology_combo)  # &&: a literal & (not a mnemonic)
        adv = self.advanced = QCollapsible("Advanced")
        adv_inner = QWidget()
        adv_form = QFormLayout(adv_inner)
        adv_form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.natural_check = QCheckBox("natural images")
        self.natural_check.setToolTip(
            "natural-image co-learning: co-train on natural images (S2S-ST); off for the ablation"
        )
        adv_form.addRow(self.natural_check)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("random seed (training and the hold-out split of Validate)")
        adv_form.addRow("Seed", self.seed_spin)
        self.aux_spin = QSpinBox()
        self.aux_spin.setRange(0, MAX_AUX_GENES)
        self.aux_spin.setSpecialValueText("none")
        self.aux_spin.setToolTip(
            "genes of the slide with the strongest spatial pattern that the networks also learn from, besides "
            "the genes picked (never imputed; the picked genes keep half of the training). Off by default: "
            "with few picked genes they lowered the maps' accuracy on small slides (benchmarks/results/aux_genes.md)"
        )
        adv_form.addRow("Extra genes", self.aux_spin)
        self.cascades_spin = QSpinBox()
        self.cascades_spin.setRange(0, 8)
        self.cascades_spin.setSpecialValueText("preset")
        self.cascades_spin.setToolTip("number of cascades (0: the preset's)")
        adv_form.addRow("Cascades", self.cascades_spin)
        self.features_spin = QSpinBox()
        self.features_spin.setRange(0, 256)
        self.features_spin.setSpecialValueText("preset")
        self.features_spin.setToolTip("model size: feature channels (0: the preset's)")
        adv_form.addRow("Model size", self.features_spin)
        adv.addWidget(adv_inner)
        form.addRow(adv)
        for w in (self.preset_combo, self.device_combo, self.histology_combo):
            w.currentIndexChanged.connect(self._changed)
        for w in (self.budget_spin, self.seed_spin, self.aux_spin, self.cascades_spin, self.features_spin):
            w.valueChanged.connect(self._changed)
        self.natural_check.toggled.connect(self._changed)
        for w in (self.preset_combo, self.device_combo):
            w.currentIndexChanged.connect(self._update_preset_note)

    def _changed(self, *_) -> None:
        if not self._loading:
            self.changed.emit()

    def _update_preset_note(self, *_) -> None:
        """Say so when the ``paper`` preset would run on the CPU (it is meant for a GPU)."""
        device = self.device_combo.currentData() or "auto"
        on_cpu = device == "cpu" or (device == "auto" and not self.accelerators)
        slow = self.preset_combo.currentText() == "paper" and on_cpu
        self.preset_note.setText(
            "The paper preset (3.4 M parameters) is meant for a GPU: on a CPU it trains ~0.03-0.2 steps/s "
            "and a preview map can take ~30 s (benchmarks/results/previous_engine/s2s_speed.md). The fast preset suits a CPU."
            if slow
            else ""
        )
        self.preset_note.setVisible(slow)

    def values(self) -> dict:
        """The :class:`WidgetSettings` fields this box holds."""
        return {
            "preset": self.preset_combo.currentText(),
            "cascades": self.cascades_spin.value() or None,
            "features": self.features_spin.value() or None,
            "budget_s": float(self.budget_spin.value()),
            "device": self.device_combo.currentData() or "auto",
            "natural_images": self.natural_check.isChecked(),
            "histology": self.histology_combo.currentData() or "auto",
            "aux_genes": int(self.aux_spin.value()),
            "seed": int(self.seed_spin.value()),
        }

    def load(self, s: WidgetSettings) -> None:
        """Show saved settings (a device this machine lacks falls back to ``auto``)."""
        self._loading = True
        try:
            self.preset_combo.setCurrentText(s.preset)
            self.cascades_spin.setValue(s.cascades or 0)
            self.features_spin.setValue(s.features or 0)
            self.budget_spin.setValue(s.budget_s)
            idx = self.device_combo.findData(s.device)
            enabled = idx >= 0 and self.device_combo.model().item(idx).isEnabled()
            self.device_combo.setCurrentIndex(idx if enabled else 0)
            self.natural_check.setChecked(s.natural_images)
            self.histology_combo.setCurrentIndex(max(0, self.histology_combo.findData(s.histology)))
            self.seed_spin.setValue(s.seed)
            self.aux_spin.setValue(s.aux_genes)
        finally:
            self._loading = False
