"""The S2S-ST dock widget: it wires the dock's boxes to the viewer and to the runs.

Each box is a module of its own: :mod:`.slide_box` (with :mod:`.open_menu`), :mod:`.genes_box`,
:mod:`.settings_box`, :mod:`.train_box`, :mod:`.results_box` and :mod:`.review_panel`. The layers
of runs are :mod:`.run_layers`, the gene slider's display :mod:`.gene_display`, the run in progress
:mod:`.runner` (jobs of :mod:`.training` in a worker of :mod:`.workers`), its progress
:mod:`.state`, and what persists :mod:`.settings`. This module connects them.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QScrollArea, QSizePolicy, QTabWidget, QVBoxLayout, QWidget

from . import dock_layout, messages, side_by_side
from .gene_display import GENE_KINDS, place_gene_name, show_gene, show_scale_bar, sync_gene_display
from .genes_box import GenesBox
from .layers import error_name, gene_stack_layer, s2s_meta, saved_measured_layer
from .messages import fmt_seconds, one_line
from .results_box import ResultsBox
from .review import ReviewTable, review_of
from .review_panel import ReviewPanel
from .review_panel import column as review_column
from .run_layers import RunLayers, link_contrast
from .runner import JobRunner
from .settings import SettingsStore, WidgetSettings
from .settings_box import SettingsBox
from .slide_box import SlideBox
from .state import TrainingState
from .train_box import TrainBox
from .training import (
    PLAIN_OPTIONS,
    TrainingJob,
    TrainingOutcome,
    TrainingPreview,
    ValidationJob,
    ValidationOutcome,
    he_counterpart,
    median_delta,
    pending_layers,
)

#: Title of the review table's dock widget.
REVIEW_DOCK_NAME = "S2S-ST review"
#: Narrowest review panel (px): Gene, Status, PCC, RMSE and ~100 px of comment side by side.
REVIEW_MIN_WIDTH = 340

#: Shortest interval between two refreshes of the progress panel (each repaint costs the GUI thread).
UI_REFRESH_MS = 200
#: While a run goes on, the elapsed time and the ETA on screen move on at least this often (ms), events or not.
CLOCK_MS = 1000
#: For this long after the final maps, the panel keeps its Results box in view as the done line is drawn.
REVEAL_S = 2.0


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


def slide_folder(source) -> str | None:
    """The folder a slide sits in (the one holding its ``.h5ad`` file or its Space Ranger folder):
    where dialogs about it start, and where its results and reviews are saved by default."""
    p = Path(source)
    return str(p.parent) if p.exists() else None


def _notify(kind: str, message: str) -> None:
    messages.notify(kind, message)


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
        self.run_layers = RunLayers(napari_viewer, on_change=self._sync_gene_display)
        self._slides: dict[int, object] = {}
        self._previous_slides: set[int] = set()  # slides seen before (a new one gets selected)
        self._genes_for: int | None = None
        self._genes_by_slide: dict[int, list[str]] = {}  # each slide's picked genes, kept across switches
        self._reviews: dict[int, ReviewTable] = {}  # each slide's review, kept across switches
        self._shown_slide: int | None = None  # the slide whose layers are on show (the others' are hidden)
        self._runner = JobRunner()
        self._t_click = 0.0
        self._grid_saved: dict | None = None
        self._loading_settings = False
        self._last_dir = ""
        self._scale_bar_shown = False
        self._reveal_until = 0.0  # the panel keeps the Results box in view until then (after a run)

        threading.Thread(target=warm_up, name="napari-s2s-warm-up", daemon=True).start()
        self._build_ui()
        self._load_settings()
        # progress events arrive once per training step: refresh the panel at most every UI_REFRESH_MS
        self._ui_timer = QTimer(self)
        self._ui_timer.setSingleShot(True)
        self._ui_timer.setInterval(UI_REFRESH_MS)
        self._ui_timer.timeout.connect(self._on_state)
        self.state.events.connect(self._schedule_ui)
        # between events (choosing the base predictor takes seconds) the clock still moves on screen
        self._clock = QTimer(self)
        self._clock.setInterval(CLOCK_MS)
        self._clock.timeout.connect(self._tick)
        self._clock.start()
        self.state.events.phase.connect(self._update_buttons)
        self.destroyed.connect(self._runner.shutdown)
        self._runner.connect(self.viewer.layers.events.inserted, self._refresh_slides)
        self._runner.connect(self.viewer.layers.events.removed, self._refresh_slides)
        self._runner.connect(self.viewer.dims.events.current_step, self._sync_gene_display)
        place_gene_name(self.viewer)
        self._refresh_slides()
        self._update_buttons()
        self._on_state()

    # ================================================================== UI
    def _build_ui(self) -> None:
        note = lambda kind, msg: _notify(kind, msg)  # noqa: E731 - looked up at call time (tests patch it)
        self.slide_box = SlideBox(open_path=self.open_slide, start_dir=self._start_dir)
        self.slide_box.changed.connect(self._on_slide_changed)
        self.genes_box = GenesBox(notify=note)
        self.genes_box.genes_changed.connect(self._on_genes_changed)
        self.genes_box.top_n_changed.connect(self._save_settings)
        self.settings_box = SettingsBox()
        self.settings_box.changed.connect(self._save_settings)
        self.train_box = TrainBox()
        self.train_box.train_button.clicked.connect(self.start_training)
        self.train_box.stop_button.clicked.connect(self.stop)
        self.train_box.validate_button.clicked.connect(self.start_validation)
        self.results_box = ResultsBox(save=self.save_results, default_path=self._save_path, notify=note)
        self.results_box.side_by_side_check.toggled.connect(self.set_side_by_side)
        self.results_box.model_at_spots_check.toggled.connect(self.set_model_at_spots)
        self.results_box.review_button.clicked.connect(self.show_review)
        self.review_panel = ReviewPanel(
            on_gene_clicked=self._show_gene,
            notify=note,
            start_dir=self._start_dir,
            known_genes=lambda: (
                set(map(str, self.current_slide().genes)) if self.current_slide() is not None else set()
            ),
            open_blinded=self.open_blinded_reading,
        )
        # Slide; Genes | Settings as tabs (one height for both); Train; Results. The review table gets a
        # dock widget of its own once this one is docked (:mod:`.dock_layout`).
        self.tabs = QTabWidget()
        for box, label in ((self.genes_box, "Genes"), (self.settings_box, "Settings")):
            box.setTitle("")
            box.setFlat(True)
            self.tabs.addTab(box, label)
        self.tabs.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        inner = QWidget()
        col = QVBoxLayout(inner)
        col.setContentsMargins(4, 4, 4, 4)
        for box in (self.slide_box, self.tabs, self.train_box, self.results_box):
            col.addWidget(box)
        self._column = col
        col.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        scroll.setWidget(inner)
        self._scroll = scroll
        scroll.verticalScrollBar().rangeChanged.connect(self._on_scroll_range)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.setMinimumWidth(200)
        self.review_panel.setMinimumWidth(REVIEW_MIN_WIDTH)
        self.review_dock = None
        QTimer.singleShot(0, self._place_review)

    def _place_review(self) -> None:
        """The review table in a dock widget of its own (or, outside a napari window, under the boxes)."""
        try:
            dock = dock_layout.add_panel(
                self.viewer,
                self,
                self.review_panel,
                REVIEW_DOCK_NAME,
                main_height=self._scroll.widget().sizeHint().height(),
            )
        except RuntimeError:  # the widget went away before the event loop ran
            return
        if dock is None:
            self._column.insertWidget(self._column.count() - 1, self.review_panel)
            return
        self.review_dock = dock
        viewer, panel = self.viewer, self.review_panel
        self.destroyed.connect(lambda *_: dock_layout.remove_panel(viewer, panel))

    def show_review(self) -> None:
        """Bring the review table to the front."""
        dock_layout.show_panel(self.review_dock)

    def scroll_to(self, child: QWidget) -> None:
        """Scroll the panel so that ``child`` is visible (e.g. the Train section)."""
        self._scroll.ensureWidgetVisible(child, 0, 40)

    def _start_dir(self) -> str:
        """Where file dialogs start: the current slide's folder, else the last folder opened from."""
        slide = self.current_slide()
        folder = slide_folder(slide.source) if slide is not None and slide.source else None
        return folder or self._last_dir or str(Path.home())

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
            **self.settings_box.values(),
            top_n=int(self.genes_box.top_n_spin.value()),
            last_dir=self._last_dir,
            model_at_spots=self.results_box.model_at_spots_check.isChecked(),
        )

    def _load_settings(self) -> None:
        s = self.store.load()
        self.store.save(s)  # remembered as written: the Train click does not rewrite unchanged settings
        self._loading_settings = True
        try:
            self.settings_box.load(s)
            self.results_box.model_at_spots_check.setChecked(s.model_at_spots)
            self.genes_box.top_n_spin.setValue(s.top_n)
            self._last_dir = s.last_dir
        finally:
            self._loading_settings = False

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
            opened = [key for key in slides if key not in self._previous_slides]
            if opened:  # a slide just opened: work on it
                select = opened[-1]
                self._show_scale_bar(slides[select])
            elif current is not None and id(current) in slides:
                select = id(current)
            else:
                select = list(slides)[-1] if slides else None
            self._previous_slides = set(slides)
            for memo in (self._genes_by_slide, self._reviews):  # slides whose layers all went
                for key in [k for k in memo if k not in slides]:
                    del memo[key]
            self.slide_box.set_slides({key: slide.name for key, slide in slides.items()}, select)
        self._follow_selection()  # the slide's measured stack may arrive after its first layer
        self._sync_gene_display()

    def _show_scale_bar(self, slide) -> None:
        """Turn napari's scale bar on for the first slide laid out in micrometres (napari reads the
        unit from the layers); once per dock, so a user who hides it keeps it hidden."""
        if self._scale_bar_shown or slide.geometry.units != "um":
            return
        self._scale_bar_shown = True
        show_scale_bar(self.viewer)

    def current_slide(self):
        """The slide chosen in the selector, or ``None``."""
        if not hasattr(self, "slide_box"):
            return None
        return self._slides.get(self.slide_box.current_key())

    def select_slide(self, slide) -> None:
        """Choose ``slide`` (it must have layers in the viewer)."""
        if not self.slide_box.select(id(slide)):
            raise ValueError("that slide has no layer in the viewer")

    def _on_slide_changed(self, *_) -> None:
        slide = self.current_slide()
        if slide is None:
            self.slide_box.set_info("no slide: open one (File > Open, drag and drop, or Open…)")
            self.genes_box.set_slide(None)
            self._update_buttons()
            return
        self.genes_box.set_slide(slide)
        self._show_slide(slide)
        if self._genes_for != id(slide):
            g = slide.geometry
            um = f"{g.um_per_px:.3g} um/px" if g.um_per_px else f"{g.units} units"
            self.slide_box.set_info(f"{int(slide.usable().sum())} spots · {slide.n_genes} genes · {um}")
            self.slide_box.info.setToolTip(f"{slide.kind} lattice; source: {slide.source or 'built in'}")
            self._genes_for = id(slide)
            self.review = self._review_for(slide)
            if slide.is_imputed_result:  # a saved result: review its genes (training needs the original slide)
                measured = slide.result_measured()
                self.slide_box.set_info(
                    f"saved S2S result: {slide.n_spots} dense positions"
                    + ("" if measured is None else f" ({int(measured.sum())} measured)")
                    + f", {len(slide.result_genes())} imputed genes. Review them in the S2S-ST review panel; to train, open the original slide."
                )
                self.set_genes(slide.result_genes())
                self.review.set_genes(self.selected_genes())
                QTimer.singleShot(0, self.show_review)  # reviewing is what a saved result is opened for
            elif self._genes_by_slide.get(id(slide)):  # picked earlier: the user's choice comes back
                self.set_genes(self._genes_by_slide[id(slide)])
            else:
                self.genes_box.use_top_genes()
            self.review_panel.refresh()
        self._update_buttons()

    def _review_for(self, slide) -> ReviewTable:
        """The review of ``slide`` (made empty the first time it is picked)."""
        if id(slide) not in self._reviews:
            self._reviews[id(slide)] = review_of(slide)
        return self._reviews[id(slide)]

    def _show_slide(self, slide) -> None:
        """On a change of slide: its layers on show, the other slides' hidden, the view fitted to it."""
        if id(slide) == self._shown_slide:
            return
        self._shown_slide = id(slide)
        side_by_side_on = self._grid_saved is not None
        if side_by_side_on:
            self._leave_side_by_side()
        self.run_layers.show_slide(slide)
        self._sync_gene_display()
        if side_by_side_on:
            self.set_side_by_side(True)
        # after the event loop turns: a slide being opened adds its other layers first
        QTimer.singleShot(0, self._fit_view)

    def _fit_view(self) -> None:
        slide = self.current_slide()
        mine = self.run_layers.show_slide(slide) if slide is not None else []
        if not mine:
            return
        self.viewer.fit_to_view(layers=mine)
        # the layer controls and the gene's name on the canvas: this slide's top gene stack on show
        stacks = [x for x in reversed(mine) if x.visible and s2s_meta(x).get("kind") in GENE_KINDS]
        active = self.viewer.layers.selection.active
        if stacks and (active is None or s2s_meta(active) is None or s2s_meta(active).get("slide") is not slide):
            self.viewer.layers.selection.active = stacks[0]
        self._sync_gene_display()

    def _keep_slide_shown(self) -> None:
        """A run on a slide that is not the one picked added or showed layers: they wait hidden."""
        slide = self.current_slide()
        if slide is not None:
            self.run_layers.show_slide(slide)

    def open_slide(self, path: str, bin_um: float | None = None) -> None:
        """Open ``path`` through the plugin's reader (same as File > Open); ``bin_um``: bin size of
        Xenium / SpatialData cells (default: the reader's)."""
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
        return self.genes_box.selected_genes()

    def set_genes(self, genes) -> None:
        """Replace the selection (names must be the slide's)."""
        self.genes_box.set_genes(genes)

    def add_genes(self, genes) -> None:
        self.genes_box.add_genes(genes)

    def use_top_genes(self) -> None:
        """Select the top-N variable genes of the slide (N from the Genes box)."""
        self.genes_box.use_top_genes()

    def apply_gene_list(self, text: str) -> None:
        """Select the genes of a pasted list; unknown names are reported with close matches."""
        self.genes_box.apply_gene_list(text)

    def _on_genes_changed(self) -> None:
        slide = self.current_slide()
        if slide is not None and not slide.is_imputed_result:
            self._genes_by_slide[id(slide)] = self.selected_genes()
        self._update_buttons()
        self._follow_selection()

    def _follow_selection(self) -> None:
        self.run_layers.follow_selection(self.current_slide(), self.selected_genes())

    # ================================================================== runs
    def _update_buttons(self, *_) -> None:
        from ..core.jobs import MIN_SPOTS

        slide = self.current_slide()
        n_use = 0 if slide is None or slide.is_imputed_result else int(slide.usable().sum())
        why = (
            "open a slide first (File > Open, drag and drop, or Open…)"
            if slide is None
            else "this is a saved result: open the original slide to train or validate"
            if slide.is_imputed_result
            else f"{n_use} spots in tissue with counts: too few to train or validate (at least {MIN_SPOTS})"
            if n_use < MIN_SPOTS
            else "pick genes first (Genes tab)"
            if not self.selected_genes()
            else ""
        )
        ready = not why
        job = self._runner.job
        self.train_box.set_buttons(
            ready,
            self.running,
            why,
            stopping=job is not None and job.stop_requested,
            final_maps=self.state.phase == "impute",
        )
        self.results_box.set_savable(self._why_not_savable(slide))

    def _why_not_savable(self, slide) -> str:
        """Why Save is disabled ("" when it is not)."""
        if slide is None:
            return "no slide: open one and train"
        if slide.is_imputed_result:
            return f"this is a saved result ({Path(slide.source).name if slide.source else 'a file'}) already"
        layer = self.imputed_layer()
        if layer is None:
            return "no imputed maps yet: train first"
        if s2s_meta(layer).get("preview"):
            return "these are preview maps: the final maps come when training ends"
        return ""

    @property
    def worker(self):
        """The napari worker of the current run (``None`` when idle or in sync mode)."""
        return self._runner.worker

    @property
    def running(self) -> bool:
        return self._runner.running

    def _run_slide(self):
        """The slide of the run in progress, else the current one."""
        return self.current_slide() if self._runner.job is None else self._runner.job.slide

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
        self.store.save(s)  # (a no-op unless a setting changed without being saved)
        overrides = s.config_overrides()
        if s.histology == "on" and not self._has_image(slide, "training"):
            overrides["histology"] = "off"
        self.first_map_s = self.final_map_s = None
        self.previews_shown = 0
        self.run_layers.start_run()
        source = self.display_source()
        # now: no layer is added while training runs
        self._show_run_maps(pending_layers(slide, genes, source), slide, final_or_preview=False)
        job = TrainingJob(slide, genes, preset=s.preset, overrides=overrides, source=source)
        self._start(job, f"training on {slide.name} ({len(genes)} genes)")

    def start_validation(self) -> None:
        """Run the hold-out protocol with S2S on this slide; show per-gene PCC/RMSE and error maps."""
        ready = self._ready_to_run()
        if ready is None:
            return
        slide, genes = ready
        s = self.settings()
        options = dict(s.config_overrides(), preset=s.preset)
        method = self.train_box.method()
        guided = None
        if s.histology != "off":
            has_image = self._has_image(slide, f"validating {method}", quiet=s.histology != "on")
            guided = he_counterpart(method, s.histology, has_image, options)
            if guided is not None:
                options = {**options, **PLAIN_OPTIONS.get(method, {})}  # without vs with H&E
            if not has_image:
                options["histology"] = "off"
        he_method, he_options = guided or (None, None)
        job = ValidationJob(
            slide,
            genes,
            method,
            budget_s=s.budget_s,
            seed=s.seed,
            options=options,
            he_method=he_method,
            he_options=he_options,
        )
        what = method if he_method is None else f"{method} vs {he_method}"
        self._start(job, f"hold-out validation of {what} on {slide.name}")

    @staticmethod
    def _has_image(slide, doing: str, quiet: bool = False) -> bool:
        """Whether ``slide`` has an H&E image guidance can use; when not (and not ``quiet``), a warning
        says that the run goes on without it (the setting is kept for the next slide)."""
        from ..core.data.histology_features import histology_available

        ok = bool(histology_available(slide))
        if not ok and not quiet:
            _notify("warning", f"H&E guidance is on but {slide.name} has no usable H&E image: {doing} without it")
        return ok

    def _start(self, job, message: str) -> None:
        self._t_click = time.perf_counter()
        self.state.reset("starting", message)
        self._runner.job = job
        self._update_buttons()
        self._runner.launch(self._on_yield, self._on_error, self._on_finished)

    def open_blinded_reading(self):
        """Open (or show) the plugin's "Blinded reading" dock, where review sessions are made and read."""
        try:
            added = self.viewer.window.add_plugin_dock_widget("napari-s2s", "Blinded reading")
        except Exception as exc:  # no window (headless viewer model) or napari refused
            _notify("warning", f"could not open the Blinded reading dock: {exc}".splitlines()[0])
            return None
        dock_layout.tabify_beside(self, added[0])  # on a laptop screen a tab of its own, not a strip below
        return added

    def stop(self) -> None:
        """Stop the run: training makes its final maps from the best model so far, in one pass;
        a validation ends after its method's current training step (no numbers)."""
        job = self._runner.job
        if job is None or job.stop_requested:
            return
        job.stop()
        with self.state.events.paused():
            self.state.eta_s = None
        self.state.message = (
            "stopping the validation…"
            if not isinstance(job, TrainingJob)
            else "stopping once the base predictor is chosen: it will be the result…"
            if self.state.phase in ("starting", "prepare")
            else "stopping: final maps from the best model so far (one pass)…"
        )
        self.state.phase = "stopping"

    def _on_yield(self, item) -> None:
        job = self._runner.job
        if job is not None and job.stop_requested and getattr(item, "phase", "") in ("prepare", "train", "validate"):
            return  # sent before the job saw the Stop: the panel says "stopping" until the maps come
        if isinstance(item, TrainingOutcome):
            self._show_training(item)
        elif isinstance(item, TrainingPreview):
            self._show_preview(item)
        elif isinstance(item, ValidationOutcome):
            self._show_validation(item)
        else:
            self.state.apply(item)

    def _on_error(self, exc: BaseException) -> None:
        self.run_layers.run_failed()  # the empty stack goes, the earlier maps show again
        self.state.message = one_line(exc)
        self.state.phase = "error"
        _notify("error", f"run failed: {one_line(exc)}")

    def _on_finished(self) -> None:
        job = self._runner.finished()
        if self.state.running:  # quit before an outcome (validation stopped)
            self.state.phase = "stopped"
            if isinstance(job, ValidationJob):
                self.state.message = "validation stopped"
        self._update_buttons()

    def _tick(self) -> None:
        if self.state.running and self._runner.job is not None:
            self.state.tick(time.perf_counter() - self._t_click)

    def _schedule_ui(self, *_) -> None:
        if not self._ui_timer.isActive():
            self._ui_timer.start()

    def _on_state(self, *_) -> None:
        """Show the training state (progress bar, ETA line, loss plot)."""
        self.train_box.show_state(self.state)

    # ================================================================== results as layers
    def imputed_layer(self, slide=None):
        """The imputed layer of ``slide`` (default: the current one), or ``None``."""
        return self.run_layers.imputed_layer(slide or self.current_slide())

    def _show_run_maps(self, layers: dict, slide, final_or_preview: bool = True):
        imputed = self.run_layers.show_run_maps(layers, slide, final_or_preview)
        if slide is not self.current_slide():
            self._keep_slide_shown()
        elif self.results_box.side_by_side_check.isChecked():
            self.set_side_by_side(True)
        return imputed

    def _show_preview(self, out: TrainingPreview) -> None:
        self._show_run_maps(out.layers, self._run_slide())
        self.previews_shown += 1
        if self.first_map_s is None:
            self.first_map_s = time.perf_counter() - self._t_click
        self.state.message = f"preview at step {out.step} ({'the final maps' if out.final else 'training goes on'})"
        self._update_buttons()

    def _show_training(self, out: TrainingOutcome) -> None:
        slide = self._run_slide()
        self._show_run_maps(out.layers, slide)
        self.run_layers.add_spots_layer(slide)
        self.last_outcome = out
        self.final_map_s = time.perf_counter() - self._t_click
        if self.first_map_s is None:
            self.first_map_s = self.final_map_s
        self.run_layers.start_run()
        self._review_for(slide).set_genes(out.genes)
        self.review_panel.refresh()
        with self.state.events.paused():
            self.state.eta_s = 0.0
        budget = getattr(out.config, "budget_s", None)
        self.state.message = (
            f"{'stopped: ' if out.stopped else ''}maps for {len(out.genes)} genes "
            f"{fmt_seconds(out.seconds)} after Train"
            + ("" if budget is None or out.stopped else f" (budget {budget:.0f} s)")
            + (f"; {out.verdict}" if out.verdict else "")
            + (
                ""
                if out.preview_step is None
                else f"; the preview's maps (step {out.preview_step}, one network)"
                + ("" if out.stopped else ": the budget left no time for more")
            )
        )
        self.state.phase = "stopped" if out.stopped else "done"
        self._update_buttons()
        # the done line can take several lines: bring Save into view, and again whenever the panel grows
        # as the line is drawn (within a second or two: _on_scroll_range)
        self._reveal_until = time.perf_counter() + REVEAL_S
        self._reveal_results()

    def _reveal_results(self) -> None:
        """Scroll the panel (as little as it takes) so that the Results box is in view."""
        self.scroll_to(self.results_box)

    def _on_scroll_range(self, *_) -> None:
        if time.perf_counter() < self._reveal_until:
            self._reveal_results()

    def _show_validation(self, out: ValidationOutcome) -> None:
        slide = self._run_slide()
        err = out.error_grid
        data, _ = err.display()
        lim = []
        for g in range(data.shape[0]):
            v = np.abs(data[g][np.isfinite(data[g])])
            b = float(np.percentile(v, 99)) if v.size else 1.0
            lim.append((-(b or 1.0), b or 1.0))
        self.run_layers.show_error_maps(
            slide,
            gene_stack_layer(
                slide,
                err,
                "error",
                limits=lim,
                name=error_name(slide.name, out.method),
                metrics=out.metrics,
                method=out.method,
            ),
        )
        if slide is not self.current_slide():
            self._keep_slide_shown()
        self.last_validation = out
        review = self._review_for(slide)
        review.set_genes(out.genes)
        review.set_metrics(out.compared or out.metrics)
        self.review_panel.refresh()
        pccs = [m["pcc"] for m in out.metrics.values() if m.get("pcc") is not None]
        med = f"{out.method} median PCC {np.median(pccs):.3f}" if pccs else f"{out.method} PCC undefined"
        if out.compared is not None:
            d = median_delta(out.compared)
            med += f"; with H&E ({out.he_method}): median ΔPCC " + ("undefined" if d is None else f"{d:+.3f}")
        self.state.message = (
            f"hold-out ({out.n_measured} measured, {out.n_hidden} hidden spots, {fmt_seconds(out.seconds)}): {med}"
            " (per gene in the review table)"
        )
        self.state.phase = "done"
        self.show_review()  # the per-gene numbers are in the review table

    def _sync_gene_display(self, *_) -> None:
        sync_gene_display(self.viewer)

    def _show_gene(self, gene: str) -> None:
        """Clicking a gene in the review table shows it: the gene slider jumps to that gene."""
        show_gene(self.viewer, gene)

    # ================================================================== side by side
    def set_side_by_side(self, on: bool) -> None:
        """napari grid mode: measured | imputed, each over its own copy of the H&E, shared contrast,
        each panel labelled. On a reopened result, "measured" is its values at its measured spots."""
        if not on:
            self._leave_side_by_side()
            return
        self._leave_side_by_side()
        slide = self.current_slide()
        pair = self._side_by_side_pair(slide)
        if pair is None:
            self.state.message = "side by side compares measured and imputed maps: train first"
            return
        he = self.run_layers.layers_of(slide, "he")
        self._grid_saved = side_by_side.enter(self.viewer, *pair, he[0] if he else None)

    def _side_by_side_pair(self, slide):
        """``(measured, imputed)`` layers to set side by side, or ``None``."""
        if slide is None:
            return None
        if slide.is_imputed_result:
            stack = [x for x in self.run_layers.layers_of(slide, "measured") if s2s_meta(x).get("saved_result")]
            if not stack:
                return None
            meta = s2s_meta(stack[-1])
            made = saved_measured_layer(slide, meta["genes"], meta.get("gene_limits"))
            if made is None:
                return None
            measured = self.viewer.add_image(made[0], **made[1])
            link_contrast([measured, stack[-1]])
            return measured, stack[-1]
        imputed = self.imputed_layer(slide)
        if imputed is None:
            return None
        measured = self.run_layers.layers_of(slide, "measured", s2s_meta(imputed)["genes"])
        return (measured[-1], imputed) if measured else None

    def _leave_side_by_side(self) -> None:
        side_by_side.leave(self.viewer, self._grid_saved)
        self._grid_saved = None

    # ================================================================== display of the imputed maps
    def display_source(self) -> str:
        """What imputed maps show at measured spots: ``"values"`` (measured, exact) or ``"model"``."""
        return self.results_box.display_source()

    def set_model_at_spots(self, on: bool) -> None:
        """Show the network's output (``on``) or the measured values at measured spots, on every imputed stack."""
        check = self.results_box.model_at_spots_check
        if check.isChecked() != bool(on):
            check.setChecked(bool(on))  # comes back here through the signal
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

    def _save_path(self) -> str:
        slide = self.current_slide()
        return str(Path(self._start_dir()) / f"{slide.name if slide else 'slide'}_s2s.h5ad")

    # ================================================================== review
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
