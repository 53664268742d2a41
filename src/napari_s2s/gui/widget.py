"""The S2S-ST dock widget: slide, genes, settings, Train/Stop, results, validation and review.

The widget is thin: gene matching (:mod:`.gene_picker`), settings (:mod:`.settings`), the review
table (:mod:`.review` model, :mod:`.review_panel` view), the training state (:mod:`.state`), layer
building (:mod:`.layers`) and the engine adapter (:mod:`.training`) are modules of their own; this
one wires them to Qt widgets and layers.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ..core.errors import SlideError
from . import workers
from .gene_picker import parse_gene_list, search_genes
from . import side_by_side
from .layers import gene_stack_layer, measured_spots_layer, s2s_meta
from .loss_plot import LossPlot
from .progress import ProgressBar
from .review import ReviewTable
from .review_panel import ReviewPanel
from .review_panel import column as review_column
from .settings import DEVICES, HISTOLOGY_MODES, PRESETS, SettingsStore, WidgetSettings
from .state import TrainingState
from .training import (
    TrainingJob,
    TrainingOutcome,
    TrainingPreview,
    ValidationJob,
    ValidationOutcome,
    he_counterpart,
    median_delta,
    pending_layers,
)

#: Layer kinds that hold gene stacks (the gene slider switches their contrast limits).
GENE_KINDS = ("measured", "imputed", "error")

#: Shortest interval between two refreshes of the progress panel (each repaint costs the GUI thread).
UI_REFRESH_MS = 200


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


def warm_up() -> None:
    """Do the engine's one-time set-up now rather than inside the first training run.

    The first run used to import the engine, the natural-image decoders and ``torch._dynamo``
    (which ``torch.optim.Adam`` imports on first use: ~3 s on 2 cores). Imports hold the GIL and
    froze the viewer for ~0.5 s mid-training (benchmarks/gui_responsiveness.py). The widget runs
    this in a background thread as it opens.
    """
    try:
        import torch

        from ..core.s2s import engine  # noqa: F401
        from ..core.s2s.natural import load_natural_images

        load_natural_images(limit=1)
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    except Exception:  # noqa: BLE001 - only a warm-up; real errors surface in the run
        pass


def validation_methods() -> list[str]:
    """Registered imputation methods, ``s2s`` first (the others are there to compare with)."""
    from ..core.methods import load_all

    names = [n for n in load_all() if not n.endswith("-permuted")]
    first = [n for n in ("s2s", "s2s-he", "gaussian", "pca_gaussian") if n in names]
    return first + sorted(n for n in names if n not in first)


def _notify(kind: str, message: str) -> None:
    from napari.utils import notifications

    getattr(notifications, f"show_{kind}")(f"napari-s2s: {message}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if not isinstance(exc, SlideError) else first


class _Runner:
    """Holds the running job and worker; not a Qt object, so it can stop them as the widget dies."""

    def __init__(self):
        self.job = None
        self.worker = None
        self.connections: list = []  # (napari emitter, callback) to drop when the widget dies

    def connect(self, emitter, callback) -> None:
        emitter.connect(callback)
        self.connections.append((emitter, callback))

    def shutdown(self, *_) -> None:
        for emitter, callback in self.connections:
            try:
                emitter.disconnect(callback)
            except (RuntimeError, ValueError, TypeError):
                pass
        self.connections.clear()
        if self.job is not None:
            self.job.stop()
        if self.worker is not None:
            try:
                self.worker.quit()
            except RuntimeError:  # already deleted
                pass


class S2SWidget(QWidget):
    """Dock widget of napari-s2s (npe2 ``widgets`` contribution).

    Parameters
    ----------
    napari_viewer
        The viewer (injected by napari).
    settings_store
        Where settings persist (default: ``widget.json`` in the user config dir).
    """

    def __init__(self, napari_viewer, settings_store: SettingsStore | None = None):
        super().__init__()
        self.viewer = napari_viewer
        self.store = settings_store or SettingsStore()
        self.state = TrainingState()
        self.last_outcome: TrainingOutcome | None = None
        self.last_validation: ValidationOutcome | None = None
        self.first_map_s: float | None = None  # click -> first map on screen (a preview or the final maps)
        self.final_map_s: float | None = None  # click -> final maps on screen
        self.previews_shown = 0  # preview maps shown during the current (or last) training run
        self._run_layer = None  # the imputed layer the running training updates (previews, then final)
        self._replaced: list = []  # (layer, visible) of earlier maps a running training will replace
        self._slides: dict[int, object] = {}
        self._previous_slides: set[int] = set()  # slides seen before (a new one gets selected)
        self._genes: list[str] = []
        self._genes_for: int | None = None
        self._runner = _Runner()
        self._t_click = 0.0
        self._grid_saved: dict | None = None
        self._loading_settings = False

        threading.Thread(target=warm_up, name="napari-s2s-warm-up", daemon=True).start()
        self._build_ui()
        self._load_settings()
        # progress events arrive once per training step: refresh the panel at most every UI_REFRESH_MS
        self._ui_timer = QTimer(self)
        self._ui_timer.setSingleShot(True)
        self._ui_timer.setInterval(UI_REFRESH_MS)
        self._ui_timer.timeout.connect(self._on_state)
        self.state.events.connect(self._schedule_ui)
        self.destroyed.connect(self._runner.shutdown)
        self._runner.connect(self.viewer.layers.events.inserted, self._refresh_slides)
        self._runner.connect(self.viewer.layers.events.removed, self._refresh_slides)
        self._runner.connect(self.viewer.dims.events.current_step, self._sync_gene_display)
        self._refresh_slides()
        self._on_state()

    # ================================================================== UI
    def _build_ui(self) -> None:
        inner = QWidget()
        col = QVBoxLayout(inner)
        col.setContentsMargins(4, 4, 4, 4)
        col.addWidget(self._build_slide_box())
        col.addWidget(self._build_gene_box())
        col.addWidget(self._build_settings_box())
        col.addWidget(self._build_run_box())
        col.addWidget(self._build_results_box())
        col.addWidget(self._build_review_box())
        col.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        scroll.setWidget(inner)
        self._scroll = scroll
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.setMinimumWidth(200)

    def scroll_to(self, child: QWidget) -> None:
        """Scroll the panel so that ``child`` is visible (e.g. the Train section)."""
        self._scroll.ensureWidgetVisible(child, 0, 40)

    @staticmethod
    def _form(box: QGroupBox) -> QFormLayout:
        form = QFormLayout(box)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        return form

    def _build_slide_box(self) -> QGroupBox:
        box = QGroupBox("Slide")
        lay = QVBoxLayout(box)
        row = QHBoxLayout()
        self.slide_combo = QComboBox()
        self.slide_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.slide_combo.setMinimumContentsLength(8)
        self.slide_combo.setToolTip("slides opened in the viewer (File > Open, drag and drop, or Open…)")
        self.slide_combo.currentIndexChanged.connect(self._on_slide_changed)
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip(
            "open an .h5ad file, a Space Ranger or Visium HD outs/ folder, a Xenium folder or a SpatialData .zarr"
        )
        menu = QMenu(self.open_button)
        menu.addAction("AnnData file (.h5ad)…", self._open_file_dialog)
        menu.addAction("Space Ranger / Visium HD folder (outs/)…", self._open_folder_dialog)
        menu.addAction("Xenium folder or SpatialData (.zarr), binned…", self._open_binned_dialog)
        self.open_button.setMenu(menu)
        row.addWidget(self.slide_combo, 1)
        row.addWidget(self.open_button)
        lay.addLayout(row)
        self.slide_info = QLabel("no slide: open one")
        self.slide_info.setWordWrap(True)
        lay.addWidget(self.slide_info)
        return box

    def _build_gene_box(self) -> QGroupBox:
        box = QGroupBox("Genes")
        lay = QVBoxLayout(box)
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("search genes…")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.textChanged.connect(self._on_search)
        self.search_edit.returnPressed.connect(self._add_matches)
        lay.addWidget(self.search_edit)
        self.match_list = QListWidget()
        self.match_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.match_list.setMaximumHeight(90)
        self.match_list.itemDoubleClicked.connect(lambda item: self.add_genes([item.text()]))
        lay.addWidget(self.match_list)
        self.add_button = QPushButton("Add selected")
        self.add_button.clicked.connect(self._add_matches)
        lay.addWidget(self.add_button)

        lay.addWidget(QLabel("Selected:"))
        self.selected_list = QListWidget()
        self.selected_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.selected_list.setMaximumHeight(110)
        lay.addWidget(self.selected_list)
        row = QHBoxLayout()
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self._remove_selected)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(lambda: self.set_genes([]))
        row.addWidget(self.remove_button)
        row.addWidget(self.clear_button)
        lay.addLayout(row)

        row = QHBoxLayout()
        self.top_n_spin = QSpinBox()
        self.top_n_spin.setRange(1, 500)
        self.top_n_spin.setValue(8)
        self.top_n_spin.valueChanged.connect(self._save_settings)
        self.top_n_button = QPushButton("Top-N variable")
        self.top_n_button.setToolTip("the N genes with the highest variance (detected in >= 10 % of spots)")
        self.top_n_button.clicked.connect(self.use_top_genes)
        row.addWidget(self.top_n_spin)
        row.addWidget(self.top_n_button, 1)
        lay.addLayout(row)

        self.paste_edit = QPlainTextEdit()
        self.paste_edit.setPlaceholderText("paste gene names (comma, space or newline separated)")
        self.paste_edit.setMaximumHeight(60)
        self.paste_button = QPushButton("Use pasted list")
        self.paste_button.clicked.connect(lambda: self.apply_gene_list(self.paste_edit.toPlainText()))
        paste = QCollapsible("Paste a list")
        paste.addWidget(self.paste_edit)
        paste.addWidget(self.paste_button)
        lay.addWidget(paste)
        self.unknown_label = QLabel("")
        self.unknown_label.setWordWrap(True)
        self.unknown_label.setStyleSheet("color: #f0a050")
        lay.addWidget(self.unknown_label)
        return box

    def _build_settings_box(self) -> QGroupBox:
        box = QGroupBox("Settings")
        form = self._form(box)
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(list(PRESETS))
        self.preset_combo.setToolTip("fast: small model, seconds on CPU; paper: the published model size")
        form.addRow("Preset", self.preset_combo)
        self.budget_spin = QDoubleSpinBox()
        self.budget_spin.setRange(1.0, 24 * 3600.0)
        self.budget_spin.setDecimals(0)
        self.budget_spin.setSuffix(" s")
        self.budget_spin.setToolTip("training time budget")
        form.addRow("Budget", self.budget_spin)
        self.device_combo = QComboBox()
        avail = available_devices()
        self._accelerators = [d for d in avail if d in ("cuda", "mps")]
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
        self.natural_check = QCheckBox("natural-image co-learning")
        self.natural_check.setToolTip("co-train on natural images (S2S-ST); off for the ablation")
        form.addRow(self.natural_check)
        self.histology_combo = QComboBox()
        for mode in HISTOLOGY_MODES:
            self.histology_combo.addItem(mode, mode)
        self.histology_combo.setToolTip(
            "H&E guidance: S2S learns what per-spot H&E features do not explain "
            "(auto: on when the slide has an image with >= 4 pixels per spot)"
        )
        form.addRow("H&&E guidance", self.histology_combo)  # &&: a literal & (not a mnemonic)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        form.addRow("Seed", self.seed_spin)
        adv = QCollapsible("Advanced")
        adv_inner = QWidget()
        adv_form = QFormLayout(adv_inner)
        adv_form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
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
            w.currentIndexChanged.connect(self._save_settings)
        for w in (self.budget_spin, self.seed_spin, self.cascades_spin, self.features_spin):
            w.valueChanged.connect(self._save_settings)
        self.natural_check.toggled.connect(self._save_settings)
        for w in (self.preset_combo, self.device_combo):
            w.currentIndexChanged.connect(self._update_preset_note)
        return box

    def _update_preset_note(self, *_) -> None:
        """Say so when the ``paper`` preset would run on the CPU (it is meant for a GPU)."""
        device = self.device_combo.currentData() or "auto"
        on_cpu = device == "cpu" or (device == "auto" and not self._accelerators)
        slow = self.preset_combo.currentText() == "paper" and on_cpu
        self.preset_note.setText(
            "The paper preset (3.4 M parameters) is meant for a GPU: on a CPU it trains ~0.03-0.2 steps/s "
            "and a preview map can take ~30 s (benchmarks/results/s2s_speed.md). The fast preset suits a CPU."
            if slow else ""
        )
        self.preset_note.setVisible(slow)

    def _build_run_box(self) -> QGroupBox:
        box = QGroupBox("Train")
        lay = QVBoxLayout(box)
        row = QHBoxLayout()
        self.train_button = QPushButton("Train")
        self.train_button.setToolTip("train S2S-ST on this slide and impute the selected genes")
        self.train_button.clicked.connect(self.start_training)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("stop: keeps the last good model and still produces maps")
        self.stop_button.clicked.connect(self.stop)
        row.addWidget(self.train_button)
        row.addWidget(self.stop_button)
        lay.addLayout(row)
        self.validate_button = QPushButton("Validate")
        self.validate_button.setToolTip(
            "hide 3/4 of the spots, predict them from the rest, and show per-gene PCC/RMSE and error maps"
        )
        self.validate_button.clicked.connect(self.start_validation)
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
        return box

    def _build_results_box(self) -> QGroupBox:
        box = QGroupBox("Results")
        lay = QVBoxLayout(box)
        self.side_by_side_check = QCheckBox("Side by side")
        self.side_by_side_check.setToolTip(
            "measured | imputed in a napari grid, the H&E under each, one contrast per gene"
        )
        self.side_by_side_check.toggled.connect(self.set_side_by_side)
        lay.addWidget(self.side_by_side_check)
        self.model_at_spots_check = QCheckBox("Model output at spots")
        self.model_at_spots_check.setToolTip(
            "Display only. Off: the imputed maps keep the measured values exactly at measured spots, which\n"
            "can look like dots beside the smoother predictions. On: they show the network's output there too.\n"
            "Saved results always keep the measured values in X (the model output is the 's2s_model' layer)."
        )
        self.model_at_spots_check.toggled.connect(self.set_model_at_spots)
        lay.addWidget(self.model_at_spots_check)
        self.save_button = QPushButton("Save imputed .h5ad…")
        self.save_button.clicked.connect(self._save_dialog)
        lay.addWidget(self.save_button)
        return box

    def _build_review_box(self) -> QGroupBox:
        self.review_panel = ReviewPanel(
            on_gene_clicked=self._show_gene,
            notify=lambda kind, msg: _notify(kind, msg),
            start_dir=lambda: getattr(self, "_last_dir", "") or str(Path.home()),
            known_genes=lambda: set(map(str, self.current_slide().genes)) if self.current_slide() is not None else set(),
        )
        return self.review_panel

    @property
    def review(self) -> ReviewTable:
        """The review model of the current slide (see :class:`.review_panel.ReviewPanel`)."""
        return self.review_panel.review

    @review.setter
    def review(self, table: ReviewTable) -> None:
        self.review_panel.review = table

    @property
    def review_table(self):
        return self.review_panel.table

    # ================================================================== settings
    def settings(self) -> WidgetSettings:
        """The settings as shown in the widget."""
        return WidgetSettings(
            preset=self.preset_combo.currentText(),
            cascades=self.cascades_spin.value() or None,
            features=self.features_spin.value() or None,
            budget_s=float(self.budget_spin.value()),
            device=self.device_combo.currentData() or "auto",
            natural_images=self.natural_check.isChecked(),
            histology=self.histology_combo.currentData() or "off",
            seed=int(self.seed_spin.value()),
            top_n=int(self.top_n_spin.value()),
            last_dir=getattr(self, "_last_dir", ""),
            model_at_spots=self.model_at_spots_check.isChecked(),
        )

    def _load_settings(self) -> None:
        s = self.store.load()
        self._loading_settings = True
        try:
            self.preset_combo.setCurrentText(s.preset)
            self.cascades_spin.setValue(s.cascades or 0)
            self.features_spin.setValue(s.features or 0)
            self.budget_spin.setValue(s.budget_s)
            idx = self.device_combo.findData(s.device)
            self.device_combo.setCurrentIndex(idx if idx >= 0 and self._device_enabled(idx) else 0)
            self.natural_check.setChecked(s.natural_images)
            self.model_at_spots_check.setChecked(s.model_at_spots)
            self.histology_combo.setCurrentIndex(max(0, self.histology_combo.findData(s.histology)))
            self.seed_spin.setValue(s.seed)
            self.top_n_spin.setValue(s.top_n)
            self._last_dir = s.last_dir
        finally:
            self._loading_settings = False

    def _device_enabled(self, idx: int) -> bool:
        return self.device_combo.model().item(idx).isEnabled()

    def _save_settings(self, *_) -> None:
        if not self._loading_settings:
            self.store.save(self.settings())

    # ================================================================== slides
    def _refresh_slides(self, *_) -> None:
        slides: dict[int, object] = {}
        for layer in self.viewer.layers:
            meta = s2s_meta(layer)
            if meta and meta.get("slide") is not None:
                slides.setdefault(id(meta["slide"]), meta["slide"])
        current = self.current_slide()
        if list(slides) != list(self._slides):
            self._slides = slides
            self.slide_combo.blockSignals(True)
            self.slide_combo.clear()
            for key, slide in slides.items():
                self.slide_combo.addItem(slide.name, key)
            opened = [key for key in slides if key not in self._previous_slides]
            if opened:  # a slide just opened: work on it
                self.slide_combo.setCurrentIndex(self.slide_combo.findData(opened[-1]))
            elif current is not None and id(current) in slides:
                self.slide_combo.setCurrentIndex(self.slide_combo.findData(id(current)))
            elif slides:
                self.slide_combo.setCurrentIndex(self.slide_combo.count() - 1)
            self._previous_slides = set(slides)
            self.slide_combo.blockSignals(False)
            self._on_slide_changed()
        self._follow_selection()  # the slide's measured stack may arrive after its first layer
        self._sync_gene_display()

    def current_slide(self):
        """The slide chosen in the selector, or ``None``."""
        key = self.slide_combo.currentData() if hasattr(self, "slide_combo") else None
        return self._slides.get(key)

    def select_slide(self, slide) -> None:
        """Choose ``slide`` (it must have layers in the viewer)."""
        idx = self.slide_combo.findData(id(slide))
        if idx < 0:
            raise ValueError("that slide has no layer in the viewer")
        self.slide_combo.setCurrentIndex(idx)

    def _on_slide_changed(self, *_) -> None:
        slide = self.current_slide()
        if slide is None:
            self.slide_info.setText("no slide: open one (File > Open, drag and drop, or Open…)")
            self._update_buttons()
            return
        if self._genes_for != id(slide):
            g = slide.geometry
            um = f"{g.um_per_px:.3g} um/px" if g.um_per_px else f"units: {g.units}"
            self.slide_info.setText(
                f"{int(slide.usable().sum())} spots, {slide.n_genes} genes, {slide.kind} lattice, {um}"
            )
            self._genes_for = id(slide)
            self.review = ReviewTable(slide=slide.name, source=slide.source or "")
            if slide.is_imputed_result:  # a saved result: review its genes (training needs the original slide)
                measured = slide.result_measured()
                self.slide_info.setText(
                    f"saved S2S result: {slide.n_spots} dense positions"
                    + ("" if measured is None else f" ({int(measured.sum())} measured)")
                    + f", {len(slide.result_genes())} imputed genes. Review them below; to train, open the original slide."
                )
                self.set_genes(slide.result_genes())
                self.review.set_genes(self._genes)
            else:
                self.use_top_genes()
            self._refresh_review()
        self._on_search(self.search_edit.text())
        self._update_buttons()

    def _open_file_dialog(self) -> None:
        start = getattr(self, "_last_dir", "") or str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Open a slide (.h5ad)", start, "AnnData (*.h5ad);;All files (*)")
        if path:
            self.open_slide(path)

    def _open_folder_dialog(self) -> None:
        start = getattr(self, "_last_dir", "") or str(Path.home())
        path = QFileDialog.getExistingDirectory(self, "Open a Space Ranger outs/ folder", start)
        if path:
            self.open_slide(path)

    def _open_binned_dialog(self) -> None:
        from qtpy.QtWidgets import QInputDialog

        from ..core.data.binning import DEFAULT_BIN_UM

        start = getattr(self, "_last_dir", "") or str(Path.home())
        path = QFileDialog.getExistingDirectory(self, "Open a Xenium output folder or a SpatialData .zarr", start)
        if not path:
            return
        bin_um, ok = QInputDialog.getDouble(
            self, "Bin size", "Square bins of (um):", getattr(self, "_bin_um", DEFAULT_BIN_UM), 0.5, 5000.0, 1
        )
        if ok:
            self._bin_um = float(bin_um)
            self.open_slide(path, bin_um=float(bin_um))

    def open_slide(self, path: str, bin_um: float | None = None) -> None:
        """Open ``path`` through the plugin's reader (same as File > Open); ``bin_um``: bin size of
        Xenium / SpatialData cells (default: the reader's, 50 um)."""
        self._last_dir = str(Path(path).parent)
        self._save_settings()
        if bin_um is None:
            self.viewer.open(str(path), plugin="napari-s2s")
            return
        from napari.layers import Layer

        from ._reader import read_slide_layers

        for data, kwargs, layer_type in read_slide_layers(str(path), bin_um=bin_um):
            if data is not None:
                self.viewer.add_layer(Layer.create(data, kwargs, layer_type))

    # ================================================================== genes
    def selected_genes(self) -> list[str]:
        return list(self._genes)

    def set_genes(self, genes) -> None:
        """Replace the selection (names must be the slide's)."""
        self._genes = []
        self.add_genes(genes)
        if not genes:
            self.selected_list.clear()
            self._update_buttons()

    def add_genes(self, genes) -> None:
        for g in genes:
            if g not in self._genes:
                self._genes.append(g)
        self.selected_list.clear()
        self.selected_list.addItems(self._genes)
        self._update_buttons()
        self._follow_selection()

    def _follow_selection(self) -> None:
        """The slide's opened measured stack shows the selected genes (until a run pairs it with maps).

        Picking genes shows them at once, and Train finds their measured stack ready (one layer fewer
        to add in the click).
        """
        slide = self.current_slide()
        if slide is None or not self._genes or slide.is_imputed_result:
            return
        following = [x for x in self._layers_of(slide, "measured") if s2s_meta(x).get("follows_selection")]
        if not following or s2s_meta(following[-1]).get("genes") == self._genes:
            return
        layer = following[-1]
        data, kwargs, _ = gene_stack_layer(
            slide, slide.grid(self._genes), "measured", name=f"{slide.name} measured ({len(self._genes)} genes)",
            follows_selection=True,
        )
        layer.metadata = {**layer.metadata, **kwargs["metadata"]}
        layer.data = data
        layer.name = kwargs["name"]
        self._sync_gene_display()

    def _remove_selected(self) -> None:
        drop = {item.text() for item in self.selected_list.selectedItems()}
        self.set_genes([g for g in self._genes if g not in drop])

    def _on_search(self, text: str) -> None:
        slide = self.current_slide()
        self.match_list.clear()
        if slide is None:
            return
        self.match_list.addItems(search_genes(slide.genes, text, limit=200))
        if self.match_list.count():
            self.match_list.setCurrentRow(0)

    def _add_matches(self) -> None:
        items = self.match_list.selectedItems() or (
            [self.match_list.item(0)] if self.match_list.count() else []
        )
        self.add_genes([i.text() for i in items])

    def use_top_genes(self) -> None:
        """Select the top-N variable genes of the slide (N from the spin box)."""
        slide = self.current_slide()
        if slide is None:
            return
        genes = slide.top_variable_genes(int(self.top_n_spin.value()))
        self.set_genes(genes or [str(g) for g in slide.genes[: int(self.top_n_spin.value())]])

    def apply_gene_list(self, text: str) -> None:
        """Select the genes of a pasted list; unknown names are reported with close matches."""
        slide = self.current_slide()
        if slide is None:
            return
        parsed = parse_gene_list(text, slide.genes)
        self.set_genes(parsed.found)
        report = parsed.report()
        self.unknown_label.setText(report)
        if report:
            _notify("warning", report)

    # ================================================================== runs
    def _update_buttons(self) -> None:
        running = self._runner.job is not None
        slide = self.current_slide()
        ready = slide is not None and bool(self._genes) and not slide.is_imputed_result
        self.train_button.setEnabled(ready and not running)
        self.validate_button.setEnabled(ready and not running)
        why = "this is a saved result: open the original slide to train or validate" if (
            slide is not None and slide.is_imputed_result) else ""
        self.train_button.setToolTip(why or "train S2S-ST on this slide for the selected genes")
        self.validate_button.setToolTip(why or "hold-out validation: hide 3/4 of the spots and score the method")
        self.stop_button.setEnabled(running)
        layer = self.imputed_layer()
        self.save_button.setEnabled(layer is not None and not s2s_meta(layer).get("preview"))

    @property
    def worker(self):
        """The napari worker of the current run (``None`` when idle or in sync mode)."""
        return self._runner.worker

    @property
    def running(self) -> bool:
        return self._runner.job is not None

    def _ready_to_run(self):
        """``(slide, genes)`` when a run can start, else ``None`` (with a warning when inputs are missing)."""
        slide, genes = self.current_slide(), self.selected_genes()
        if slide is None or not genes:
            _notify("warning", "open a slide and pick genes first")
            return None
        if self.running:
            return None
        return slide, genes

    def start_training(self) -> None:
        """Train on the current slide for the selected genes (Train button)."""
        ready = self._ready_to_run()
        if ready is None:
            return
        slide, genes = ready
        s = self.settings()
        self.store.save(s)
        self.first_map_s = self.final_map_s = None
        self.previews_shown = 0
        self._run_layer = None
        source = self.display_source()
        self._show_run_maps(pending_layers(slide, genes, source), slide)  # now: no layer is added while training runs
        job = TrainingJob(slide, genes, preset=s.preset, overrides=s.config_overrides(), source=source)
        self._start(job, f"training on {slide.name} ({len(genes)} genes)")

    def start_validation(self) -> None:
        """Run the hold-out protocol with S2S on this slide; show per-gene PCC/RMSE and error maps."""
        ready = self._ready_to_run()
        if ready is None:
            return
        slide, genes = ready
        s = self.settings()
        options = dict(s.config_overrides(), preset=s.preset)
        method = self.method_combo.currentText() or "s2s"
        guided = None
        if s.histology != "off":
            from ..core.data.histology_features import histology_available

            has_image = histology_available(slide)
            guided = he_counterpart(method, s.histology, has_image, options)
            if s.histology == "on" and not has_image:
                _notify("warning", f"H&E guidance is on but {slide.name} has no usable H&E image: "
                                   f"validating {method} without it")
        he_method, he_options = guided or (None, None)
        job = ValidationJob(slide, genes, method, budget_s=s.budget_s, seed=s.seed, options=options,
                            he_method=he_method, he_options=he_options)
        what = method if he_method is None else f"{method} vs {he_method}"
        self._start(job, f"hold-out validation of {what} on {slide.name}")

    def _start(self, job, message: str) -> None:
        self._t_click = time.perf_counter()
        self.state.reset("starting", message)
        self._runner.job = job
        self._update_buttons()
        self._runner.worker = workers.start(job.run, self._on_yield, self._on_error, self._on_finished)

    def stop(self) -> None:
        """Stop the run: training keeps its last good model and still produces maps."""
        job = self._runner.job
        if job is None:
            return
        job.stop()
        self.state.message = "stopping…"
        if isinstance(job, ValidationJob) and self._runner.worker is not None:
            self._runner.worker.quit()

    def _on_yield(self, item) -> None:
        if isinstance(item, TrainingOutcome):
            self._show_training(item)
        elif isinstance(item, TrainingPreview):
            self._show_preview(item)
        elif isinstance(item, ValidationOutcome):
            self._show_validation(item)
        else:
            self.state.apply(item)

    def _on_error(self, exc: BaseException) -> None:
        layer = self._run_layer
        if layer is not None and layer in self.viewer.layers and not s2s_meta(layer).get("step"):
            self.viewer.layers.remove(layer)  # the run failed before its first map: drop the empty stack
        self._restore_replaced()  # and show the earlier maps again
        self._run_layer = None
        self.state.message = _one_line(exc)
        self.state.phase = "error"
        _notify("error", f"run failed: {_one_line(exc)}")

    def _on_finished(self) -> None:
        job = self._runner.job
        self._runner.job = None
        self._runner.worker = None
        if self.state.running:  # quit before an outcome (validation stopped)
            self.state.phase = "stopped"
            if isinstance(job, ValidationJob):
                self.state.message = "validation stopped"
        self._update_buttons()

    def _schedule_ui(self, *_) -> None:
        if not self._ui_timer.isActive():
            self._ui_timer.start()

    def _on_state(self, *_) -> None:
        """Show the training state (progress bar, ETA line, loss plot)."""
        st = self.state
        frac = 1.0 if st.phase == "done" else st.fraction()
        text = st.phase if frac is None else f"{st.phase} {100 * frac:.0f}%"
        self.progress_bar.set_progress(frac if frac is not None else (0.0 if not st.running else None), text)
        bits = []
        if st.running and st.max_steps:
            bits.append(f"step {st.step}/{st.max_steps}")
        if st.running and st.eta_s is not None:
            bits.append(f"ETA {_fmt_s(st.eta_s)}")
        if st.elapsed_s and st.running:  # when done, the message says how long it took
            bits.append(f"{_fmt_s(st.elapsed_s)} elapsed")
        if st.message:
            bits.append(st.message)
        self.eta_label.setText(" · ".join(bits))
        self.loss_plot.set_points(st.losses)

    # ================================================================== results as layers
    def _layers_of(self, slide, kind: str, genes: list[str] | None = None):
        out = []
        for layer in self.viewer.layers:
            m = s2s_meta(layer)
            if m and m.get("slide") is slide and m.get("kind") == kind:
                if genes is None or m.get("genes") == list(genes):
                    out.append(layer)
        return out

    def imputed_layer(self, slide=None):
        """The imputed layer of ``slide`` (default: the current one), or ``None``."""
        slide = slide or self.current_slide()
        found = self._layers_of(slide, "imputed") if slide is not None else []
        return found[-1] if found else None

    def _replace_layer(self, slide, kind: str, layer_data):
        data, kwargs, _ = layer_data
        for old in self._layers_of(slide, kind):
            if old.name == kwargs["name"]:
                self.viewer.layers.remove(old)
        return self.viewer.add_image(data, **kwargs)

    def _measured_for(self, slide, genes: list[str], layer_data):
        limits = s2s_meta(layer_data[1])["gene_limits"]
        found = self._layers_of(slide, "measured", genes)
        if found:
            layer = found[-1]
            s2s_meta(layer)["gene_limits"] = limits
            s2s_meta(layer)["follows_selection"] = False  # paired with this run's maps from now on
            layer.visible = True
            return layer
        return self.viewer.add_image(layer_data[0], **layer_data[1])

    def _show_run_maps(self, out: TrainingOutcome | TrainingPreview | dict, slide=None):
        """Show a run's measured and imputed stacks; later maps of the same run update its layer in place.

        ``out`` is a preview, an outcome or the layer data of :func:`pending_layers`.
        """
        if slide is None:
            slide = self.current_slide() if self._runner.job is None else self._runner.job.slide
        layers = out if isinstance(out, dict) else out.layers
        genes = s2s_meta(layers["imputed"][1])["genes"]
        data, kwargs, _ = layers["imputed"]
        layer = self._run_layer
        if layer is not None and layer in self.viewer.layers and layer.data.shape == data.shape:
            if not isinstance(out, dict):  # a real map: the maps this run replaces can go now
                self._drop_replaced()
            layer.metadata = {**layer.metadata, **kwargs["metadata"]}
            layer.data = data  # same grid: no new layer, no new visual
            layer.name = kwargs["name"]
            return layer
        for other in self._layers_of(slide, "measured") + self._layers_of(slide, "error"):
            if s2s_meta(other).get("genes") != genes or s2s_meta(other)["kind"] == "error":
                other.visible = False
        measured = self._measured_for(slide, genes, layers["measured"])
        # a new run replaces the last maps and stale previews: hidden now, removed at its first map, shown
        # again if it fails before one
        self._drop_replaced()
        for old in self._layers_of(slide, "imputed"):
            if old.name == f"{slide.name} imputed" or s2s_meta(old).get("preview"):
                self._replaced.append((old, old.visible))
                old.visible = False
        imputed = self.viewer.add_image(data, **kwargs)
        if not isinstance(out, dict):
            self._drop_replaced()
        _link_contrast([measured, imputed])
        self._run_layer = imputed
        self.viewer.layers.selection.active = imputed
        self._sync_gene_display()
        if self.side_by_side_check.isChecked():
            self.set_side_by_side(True)
        return imputed

    def _add_spots_layer(self) -> None:
        """Rings at the measured spots (hidden; one per slide), added with the final maps, not while training."""
        slide = self.current_slide() if self._runner.job is None else self._runner.job.slide
        if slide is None or self._layers_of(slide, "spots"):
            return
        spots = measured_spots_layer(slide)
        if spots is not None:
            self.viewer.add_points(spots[0], **spots[1])
            self.viewer.layers.selection.active = self._run_layer or self.viewer.layers.selection.active

    def _drop_replaced(self) -> None:
        for old, _ in self._replaced:
            if old in self.viewer.layers:
                self.viewer.layers.remove(old)
        self._replaced = []

    def _restore_replaced(self) -> None:
        for old, visible in self._replaced:
            if old in self.viewer.layers:
                old.visible = visible
        self._replaced = []

    def _show_preview(self, out: TrainingPreview) -> None:
        self._show_run_maps(out)
        self.previews_shown += 1
        if self.first_map_s is None:
            self.first_map_s = time.perf_counter() - self._t_click
        self.state.message = f"preview at step {out.step} (training goes on)"
        self._update_buttons()

    def _show_training(self, out: TrainingOutcome) -> None:
        self._show_run_maps(out)
        self._add_spots_layer()
        self.last_outcome = out
        self.final_map_s = time.perf_counter() - self._t_click
        if self.first_map_s is None:
            self.first_map_s = self.final_map_s
        self._run_layer = None
        self.review.set_genes(out.genes)
        self._refresh_review()
        with self.state.events.paused():
            self.state.eta_s = 0.0
        self.state.message = (
            f"{'stopped early; ' if out.stopped else ''}maps for {len(out.genes)} genes "
            f"in {_fmt_s(out.seconds)}"
        )
        self.state.phase = "stopped" if out.stopped else "done"
        self._update_buttons()

    def _show_validation(self, out: ValidationOutcome) -> None:
        slide = self._runner.job.slide if self._runner.job is not None else self.current_slide()
        err = out.error_grid
        data, _ = err.display()
        lim = []
        for g in range(data.shape[0]):
            v = np.abs(data[g][np.isfinite(data[g])])
            b = float(np.percentile(v, 99)) if v.size else 1.0
            lim.append((-(b or 1.0), b or 1.0))
        layer = self._replace_layer(
            slide, "error",
            gene_stack_layer(slide, err, "error", limits=lim, name=f"{slide.name} hold-out error (pred - truth)",
                             metrics=out.metrics, method=out.method),
        )
        for other in self.viewer.layers:
            m = s2s_meta(other)
            if other is not layer and m and m.get("slide") is slide and m.get("kind") in GENE_KINDS:
                other.visible = False  # the error map alone over the H&E
        self.last_validation = out
        self.review.set_genes(out.genes)
        self.review.set_metrics(out.compared or out.metrics)
        self._refresh_review()
        pccs = [m["pcc"] for m in out.metrics.values() if m.get("pcc") is not None]
        med = f"median PCC {np.median(pccs):.3f}" if pccs else "PCC undefined"
        if out.compared is not None:
            d = median_delta(out.compared)
            med += f", with H&E ({out.he_method}) median ΔPCC " + ("undefined" if d is None else f"{d:+.3f}")
        self.state.message = (
            f"hold-out ({out.n_measured} measured, {out.n_hidden} hidden spots): {med} in {_fmt_s(out.seconds)}"
        )
        self.state.phase = "done"
        self.viewer.layers.selection.active = layer
        self._sync_gene_display()

    def _sync_gene_display(self, *_) -> None:
        """Contrast limits of the current gene on every gene stack, and its name on the canvas."""
        if self.viewer.dims.ndim < 3:
            return
        g = int(self.viewer.dims.current_step[0])
        name = None
        for layer in self.viewer.layers:
            m = s2s_meta(layer)
            if not m or m.get("kind") not in GENE_KINDS:
                continue
            limits = m.get("gene_limits") or []
            if 0 <= g < len(limits) and tuple(layer.contrast_limits) != tuple(limits[g]):
                layer.contrast_limits = limits[g]
            genes = m.get("genes") or []
            if layer.visible and 0 <= g < len(genes) and (name is None or layer in self.viewer.layers.selection):
                name = genes[g]
        overlay = self.viewer.canvas.overlays.text
        overlay.visible = name is not None
        overlay.text = name or ""

    # ================================================================== side by side
    def set_side_by_side(self, on: bool) -> None:
        """napari grid mode: measured | imputed, each over its own copy of the H&E, shared contrast."""
        if not on:
            self._leave_side_by_side()
            return
        slide = self.current_slide()
        imputed = self.imputed_layer(slide)
        if imputed is None:
            self.state.message = "side by side needs imputed maps: train first"
            return
        measured = self._layers_of(slide, "measured", s2s_meta(imputed)["genes"])
        if not measured:
            return
        self._leave_side_by_side()
        he = self._layers_of(slide, "he")
        self._grid_saved = side_by_side.enter(self.viewer, measured[-1], imputed, he[0] if he else None)

    def _leave_side_by_side(self) -> None:
        side_by_side.leave(self.viewer, self._grid_saved)
        self._grid_saved = None

    # ================================================================== display of the imputed maps
    def display_source(self) -> str:
        """What imputed maps show at measured spots: ``"values"`` (measured, exact) or ``"model"``."""
        return "model" if self.model_at_spots_check.isChecked() else "values"

    def set_model_at_spots(self, on: bool) -> None:
        """Show the network's output (``on``) or the measured values at measured spots, on every imputed stack."""
        if self.model_at_spots_check.isChecked() != bool(on):
            self.model_at_spots_check.setChecked(bool(on))  # comes back here through the signal
            return
        self._save_settings()
        source = self.display_source()
        job = self._runner.job
        if isinstance(job, TrainingJob):
            job.source = source  # the next preview and the final maps
        for layer in self.viewer.layers:
            m = s2s_meta(layer)
            if m and m.get("kind") == "imputed" and m.get("result") is not None and m.get("source") != source:
                data = m["result"].grid(source).display()[0]
                if data.shape == layer.data.shape:
                    m["source"] = source
                    layer.data = data

    # ================================================================== saving
    def save_results(self, path: str | Path) -> str:
        """Save the current slide's imputed maps as the CLI's ``.h5ad`` (with provenance)."""
        from ._writer import save_imputed

        layer = self.imputed_layer()
        if layer is None:
            raise ValueError("no imputed maps to save: train first")
        return save_imputed(s2s_meta(layer), path)

    def _save_dialog(self) -> None:
        slide = self.current_slide()
        start = str(Path(getattr(self, "_last_dir", "") or Path.home()) / f"{slide.name if slide else 'slide'}_s2s.h5ad")
        path, _ = QFileDialog.getSaveFileName(self, "Save imputed maps", start, "AnnData (*.h5ad)")
        if not path:
            return
        try:
            written = self.save_results(path)
        except (ValueError, OSError) as exc:
            _notify("error", _one_line(exc))
            return
        _notify("info", f"saved {written}")

    # ================================================================== review
    def _refresh_review(self) -> None:
        self.review_panel.refresh()

    @staticmethod
    def review_column(header: str) -> int:
        """Index of a review-table column by its header (see :data:`.review_panel.REVIEW_HEADERS`)."""
        return review_column(header)

    def set_review(self, gene: str, status: str | None = None, comment: str | None = None) -> None:
        """Review a gene (as the table's combo box and comment cell do)."""
        self.review_panel.set_review(gene, status, comment)

    def export_review(self, path: str | Path) -> Path:
        return self.review_panel.export(path)

    def load_review(self, path: str | Path) -> int:
        """Continue a review: statuses and comments of a CSV for the current slide's genes."""
        return self.review_panel.load(path)

    def _show_gene(self, gene: str) -> None:
        """Clicking a gene in the review table shows it: the gene slider jumps to that gene."""
        if self.viewer.dims.ndim < 3:
            return
        layer = self.viewer.layers.selection.active
        m = s2s_meta(layer) if layer is not None else None
        genes = (m or {}).get("genes") or []
        if gene in genes:
            self.viewer.dims.set_current_step(0, genes.index(gene))


def _link_contrast(layers) -> None:
    """Link contrast limits (and gamma) of measured and imputed stacks: one slider moves both."""
    from napari.experimental import link_layers

    try:
        link_layers(layers, ("contrast_limits", "gamma"))
    except ValueError:  # already linked
        pass


def _fmt_s(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"
