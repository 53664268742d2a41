"""The one small adapter between the widget and the engine (plain Python, no Qt).

:class:`TrainingJob` runs ``S2SImputer.fit_iter`` and then ``impute``, yielding the core's progress
events, :class:`TrainingPreview` maps while it trains (:func:`next_preview_at`) and finally a
:class:`TrainingOutcome`; :func:`pending_layers` are the run's layers as Train is clicked (the
previews and the final maps fill them in place); :class:`ValidationJob` runs the hold-out protocol of
:mod:`napari_s2s.core.evaluation.benchmark` with the ``s2s`` method and yields a :class:`ValidationOutcome`
with per-gene PCC/RMSE and error maps; with ``he_method`` it also runs the method's H&E-guided
counterpart (:func:`he_counterpart`) on the same hold-out task and compares them per gene
(:func:`compare_metrics`). Both are plain generators: the widget runs them in a napari
``thread_worker`` (see :mod:`.workers`), tests can also iterate them directly.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.data.slide import GeneGrid, Slide
from ..core.events import ProgressEvent

#: Seconds of training before the first preview map (the widget's "first map"); shorter for small
#: budgets (:data:`FIRST_PREVIEW_SHARE` of the budget), so that a pass is measured early.
PREVIEW_AFTER_S = 2.0
FIRST_PREVIEW_SHARE = 0.15
#: Later previews come at least this many times their cost apart (previews take <= ~1/5 of the time).
PREVIEW_COST_RATIO = 4.0
#: With a budget, previews after the first stop when they would take more than this share of it (they
#: count in the budget: their time is the training's).
PREVIEW_BUDGET_SHARE = 0.2
#: Test-time averaging of the final maps is planned only when its estimated cost fits in this share of
#: the budget (otherwise one pass, and the time goes to training).
TTA_BUDGET_SHARE = 0.25
#: Seconds kept free before the deadline besides the estimated final imputation (the last training
#: step, the final validation, building the layers).
DEADLINE_MARGIN_S = 0.5


@dataclass
class TrainingOutcome:
    """What a finished (or stopped) training run produced."""

    genes: list[str]
    result: Any  # core.s2s.results.ImputedResult
    config: Any  # core.s2s.engine.S2SConfig (``tta`` as the final maps were made)
    seconds: float  # from the click to the maps (what the budget bounds)
    stopped: bool  # the user stopped the run
    device: str | None = None
    layers: dict = field(default_factory=dict)
    impute_estimate_s: float | None = None  # what the final imputation was expected to take
    impute_s: float | None = None  # what it took
    verdict: str = ""  # how much of the maps the networks made (S2SImputer.verdict)
    #: the training step of the preview whose maps are the final ones (one network, provisional
    #: weight: the budget was used up or Stop came during it); ``None``: the ensemble's maps
    preview_step: int | None = None
    #: how the maps were made, for ``uns['s2s']`` of a saved result (``S2SImputer.provenance``)
    provenance: dict = field(default_factory=dict)


@dataclass
class TrainingPreview:
    """Maps from the network being trained (no test-time averaging), shown before training ends.

    Not savable: the final :class:`TrainingOutcome` replaces it.
    """

    genes: list[str]
    result: Any  # core.s2s.results.ImputedResult
    step: int
    elapsed_s: float
    seconds: float  # what computing the preview took
    layers: dict = field(default_factory=dict)
    #: whether these maps end the run (the preview used up the budget, or Stop came while it was
    #: computed): the final maps are this preview, training does not go on
    final: bool = False


@dataclass
class ValidationOutcome:
    """Hold-out validation of one method on the slide.

    ``metrics`` maps gene -> ``{"pcc", "rmse", "mae"}`` on the hidden spots; ``error_grid`` holds
    prediction minus truth at the hidden spots (NaN elsewhere), on the slide's grid. When the
    H&E-guided counterpart ran too, ``he_method`` names it and ``compared`` holds
    :func:`compare_metrics` of the two (otherwise ``None``).
    """

    genes: list[str]
    metrics: dict[str, dict]
    error_grid: GeneGrid
    method: str
    seconds: float
    n_measured: int
    n_hidden: int
    extra: dict = field(default_factory=dict)
    he_method: str | None = None
    compared: dict[str, dict] | None = None


#: H&E-guided counterpart of a method on the same task: ``method -> (guided method, fixed options,
#: whether it also takes the method's own options)``.
HE_COUNTERPARTS: dict[str, tuple[str, dict, bool]] = {
    # trains like s2s (same preset and config overrides), with the base's H&E term required
    "s2s": ("s2s-he", {"histology": "on"}, True),
    "gaussian": ("he_gaussian", {}, False),
    "pca_gaussian": ("he_gaussian", {"smoother": "pca_gaussian"}, False),
}

#: Options of the method itself when it is validated next to its H&E counterpart (``s2s`` would
#: otherwise use the image too, by its own cross-validation: the comparison is without vs with).
PLAIN_OPTIONS: dict[str, dict] = {"s2s": {"histology": "off"}}


def he_counterpart(method: str, mode: str, has_image: bool, options: dict | None = None) -> tuple[str, dict] | None:
    """The H&E-guided method to validate next to ``method``, or ``None``.

    Parameters
    ----------
    method
        The method chosen for validation.
    mode
        The widget's H&E guidance setting: ``"off"``, ``"auto"`` or ``"on"``.
    has_image
        Whether the slide has an image histology-guided methods can use.
    options
        The options ``method`` runs with (passed on where the counterpart trains the same way).

    Returns
    -------
    tuple or None
        ``(name, options)`` of the guided counterpart; ``None`` when guidance is off, there is no
        image, or ``method`` has no counterpart (e.g. it is already guided).
    """
    if mode == "off" or not has_image or method not in HE_COUNTERPARTS:
        return None
    name, fixed, inherit = HE_COUNTERPARTS[method]
    return name, {**(dict(options or {}) if inherit else {}), **fixed}


def compare_metrics(plain: dict[str, dict], guided: dict[str, dict]) -> dict[str, dict]:
    """Per gene metrics without and with H&E and their difference (guided minus plain).

    Returns ``{gene: {"pcc", "pcc_he", "dpcc", "rmse", "rmse_he", "drmse"}}`` for the genes of
    ``plain``; a value is ``None`` where either side is undefined (e.g. PCC of a constant).
    """

    def diff(a, b):
        return None if a is None or b is None else float(b) - float(a)

    out = {}
    for gene, m in plain.items():
        h = guided.get(gene, {})
        out[gene] = {
            "pcc": m.get("pcc"),
            "pcc_he": h.get("pcc"),
            "dpcc": diff(m.get("pcc"), h.get("pcc")),
            "rmse": m.get("rmse"),
            "rmse_he": h.get("rmse"),
            "drmse": diff(m.get("rmse"), h.get("rmse")),
        }
    return out


def median_delta(compared: dict[str, dict], key: str = "dpcc") -> float | None:
    """Median over genes of one difference of :func:`compare_metrics` (``None`` if none defined)."""
    vals = [m[key] for m in compared.values() if m.get(key) is not None and np.isfinite(m[key])]
    return float(np.median(vals)) if vals else None


def torch_threads() -> int:
    """Torch threads for a worker: all cores but one (the Qt event loop keeps one)."""
    return max(1, (os.cpu_count() or 2) - 1)


def _set_threads(n: int | None) -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_num_threads(n or torch_threads())


def make_config(preset: str, **overrides):
    """``S2SConfig.from_preset(preset, **overrides)`` (imported lazily: torch is heavy)."""
    from ..core.s2s.engine import S2SConfig

    return S2SConfig.from_preset(preset, **overrides)


class _Job:
    """What both jobs share: a stop request safe from any thread, and waiting for work the job runs
    in threads of its own (the worker that iterates :meth:`run` is the caller's to wait for)."""

    def __init__(self):
        self._stop = threading.Event()
        self._idle = threading.Event()  # cleared while a thread of the job computes
        self._idle.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the job's own threads have ended; ``True`` when they have (or never started)."""
        return self._idle.wait(timeout)


class TrainingJob(_Job):
    """One training run on ``slide`` for ``genes``; :meth:`stop` is safe from any thread.

    Iterate :meth:`run` to drive it: it yields the core's ``ProgressEvent`` objects (with
    ``elapsed_s`` from the click and ``eta_s`` to the final maps), :class:`TrainingPreview` maps
    and, last, a :class:`TrainingOutcome` (also after a stop: the best model so far still produces
    maps, in one pass).

    The time budget (``config.budget_s``) bounds the whole wait, from the click (the job's creation)
    to the final maps: preparing, training, previews and the final imputation. Training ends when
    what is left of the budget is what the final imputation should take, estimated from the
    measured cost of the preview passes. Not included: drawing the maps in the viewer, and at least
    one training step and one imputation pass always run (a budget of a few seconds can be exceeded).
    A preview that used up the budget, or during which Stop came, is the final maps (another pass
    would repeat it).
    """

    def __init__(
        self,
        slide: Slide,
        genes: list[str],
        config=None,
        threads: int | None = None,
        preset: str = "fast",
        overrides: dict | None = None,
        preview_after_s: float | None = PREVIEW_AFTER_S,
        source: str = "values",
    ):
        """``preview_after_s``: seconds of training before the first :class:`TrainingPreview`
        (``None``: no previews); later ones follow :func:`next_preview_at`. ``source``: what the
        imputed layers show at measured spots (see :func:`result_layers`)."""
        super().__init__()
        self.t_click = time.perf_counter()
        self.source = source
        self.preview_after_s = preview_after_s
        self.pass_cost_s: float | None = None  # seconds one imputation pass took (the last preview's)
        self._layers_cost = 0.0  # seconds building a preview's layers took
        self.previews_cost_s = 0.0  # seconds all previews took (they count in the budget)
        self._last_train: tuple[float, int] | None = None  # (time, step) of the last training event
        self._step_s: float | None = None  # seconds per training step (moving average, previews excluded)
        self._val_s = 0.0  # seconds a validation of the model takes (the engine runs one as training ends)
        self._val_loss = None  # the last training event's validation loss (a new one: a validation ran)
        self.slide = slide
        self.genes = list(genes)
        self.config = config  # None: built from preset + overrides inside run() (keeps torch off the GUI thread)
        self.preset = preset
        self.overrides = dict(overrides or {})
        self.threads = threads
        self.imputer = None
        self._abandon = threading.Event()
        self._budget_end = False  # training ended by the deadline (not by the user)

    def stop(self, abandon: bool = False) -> None:
        """Ask the run to stop after the current step; the best model so far still makes maps in one
        pass, unless ``abandon`` (the viewer closes: no maps are wanted)."""
        if abandon:
            self._abandon.set()
        self._stop.set()
        imp = self.imputer
        if imp is not None:
            imp.stop()

    @property
    def budget_s(self) -> float | None:
        return None if self.config is None else self.config.budget_s

    @property
    def deadline(self) -> float | None:
        """``time.perf_counter()`` by which the final maps should be there (``None``: no time budget)."""
        b = self.budget_s
        return None if b is None else self.t_click + b

    def passes(self, tta: bool | None = None) -> int:
        """Network passes of the final maps: one per network of the ensemble, times the lattice's
        symmetries with test-time averaging."""
        tta = (self.config is not None and self.config.tta) if tta is None else tta
        n = self.config.folds if self.config is not None else 1
        if not tta:
            return n
        from ..core.s2s.sampling import symmetries

        return n * len(symmetries(self.slide.kind))

    def plan_tta(self) -> bool:
        """Whether the final maps will be test-time averaged: as configured, unless the user stopped
        or (with a budget) its estimated cost exceeds :data:`TTA_BUDGET_SHARE` of the budget."""
        if self.config is None or not self.config.tta or self._stop.is_set():
            return False
        b, cost = self.budget_s, self.pass_cost_s
        if b is None or cost is None:
            return True
        return self.passes(True) * cost <= TTA_BUDGET_SHARE * b

    def impute_estimate_s(self, tta: bool | None = None) -> float | None:
        """Seconds the final maps should take once training stops: the engine's estimate from the costs
        it measured in the last preview (weighing the networks against the base, then one pass of each
        network, or every symmetry with test-time averaging) plus building the layers; ``None`` before
        a preview."""
        tta = self.plan_tta() if tta is None else tta
        est = None if self.imputer is None else self.imputer.final_cost_s(tta)
        if est is None:
            return None
        return est + self._layers_cost

    def run(self) -> Iterator[Any]:
        yield ProgressEvent("prepare", elapsed_s=time.perf_counter() - self.t_click, message="loading the engine")
        from ..core.s2s.engine import S2SImputer

        _set_threads(self.threads)
        if self.config is None:
            over = dict(self.overrides)
            over.setdefault("threads", self.threads or torch_threads())
            self.config = make_config(self.preset, **over)
        self.imputer = S2SImputer(self.config)
        next_at = self.preview_after_s
        if next_at is not None and self.budget_s is not None:
            next_at = min(next_at, FIRST_PREVIEW_SHARE * self.budget_s)
        final = None  # a preview that ends the run as its final maps (see below)
        for ev in self.imputer.fit_iter(self.slide, self.genes):
            if self._stop.is_set():
                self.imputer.stop()  # also when Stop came before training started (fit clears the flag)
            if ev.phase in ("done", "stopped"):  # training is over; the final maps come next
                continue
            if ev.phase == "train":
                self._keep_deadline(ev)
            yield self._as_seen(ev)
            if next_at is not None and ev.phase == "train" and ev.elapsed_s >= next_at:
                preview = self._preview(ev)
                if preview is None:
                    next_at = None
                    continue
                preview.final = self._stop.is_set() or self._budget_spent()
                yield preview
                next_at = next_preview_at(ev.elapsed_s, preview.seconds)
                if preview.final or self._stop.is_set() or self._budget_spent():
                    # Stop came during the preview, or the preview used up the budget: another pass now
                    # would only repeat it (one pass, the weights of this very step): it is the final maps
                    final = preview
                    next_at = None
                    self.imputer.stop()
        if self._abandon.is_set():
            return
        stopped = self._stop.is_set()
        tta = False if final is not None else self.plan_tta()
        est = 0.0 if final is not None else self.impute_estimate_s(tta)
        if final is None and not self.imputer.alpha:  # the networks did not help: the base predictor alone
            tta, how = False, "the base predictor"
            base_s = self.imputer.timing.get("base")
            est = None if base_s is None else base_s + self._layers_cost
        else:
            how = f"{self.passes(tta)} network passes" + (", each symmetry" if tta else "")
        about = "" if not est else f", about {est:.0f} s"
        what = "stopped: final maps from the best model so far" if stopped else "imputing dense maps"
        if final is not None:
            what, how = ("stopped" if stopped else "budget used"), f"the maps of step {final.step}, one pass"
        yield ProgressEvent(
            "stopping" if stopped else "impute",
            elapsed_s=time.perf_counter() - self.t_click,
            eta_s=est,
            message=f"{what} ({how}{about})",
        )
        t = time.perf_counter()
        result = final.result if final is not None else self.imputer.impute(self.slide, self.genes, tta=tta)
        impute_s = time.perf_counter() - t
        config = self.config if tta == self.config.tta else dataclasses.replace(self.config, tta=tta)
        device = getattr(self.imputer, "device_used", None)
        verdict = "" if final is not None else self.imputer.verdict()
        out = TrainingOutcome(
            self.genes,
            result,
            config,
            time.perf_counter() - self.t_click,
            stopped,
            device,
            impute_estimate_s=est,
            impute_s=impute_s,
            verdict=verdict,
            preview_step=None if final is None else final.step,
            provenance=self._provenance(final),
        )
        out.layers = result_layers(self.slide, out, self.source)  # built here, off the GUI thread
        yield out

    def _provenance(self, final: TrainingPreview | None) -> dict:
        """The imputer's provenance; when a preview's maps are the final ones, what describes the
        ensemble's blend (its weight, the verdict) gives way to where the maps come from."""
        prov = self.imputer.provenance()
        if final is not None:
            for key in ("alpha", "alpha_supported", "verdict"):
                prov.pop(key, None)
            prov["maps_from"] = (
                f"the preview at step {final.step}: the first network only, blended with a provisional weight "
                "(Stop came, or the budget was used up, while it was computed)"
            )
        return prov

    def _budget_spent(self) -> bool:
        """Whether the budget has no room left for another pass of the network (``False`` without one)."""
        deadline, cost = self.deadline, self.pass_cost_s
        if deadline is None or cost is None:
            return False
        return time.perf_counter() + cost + self._layers_cost + DEADLINE_MARGIN_S >= deadline

    def _keep_deadline(self, ev: ProgressEvent) -> None:
        """End training when what is left of the budget is what the final maps need."""
        now = time.perf_counter()
        validated = ev.val_loss is not None and ev.val_loss != self._val_loss
        self._val_loss = ev.val_loss
        if self._last_train is not None and ev.step > self._last_train[1]:
            per = (now - self._last_train[0]) / (ev.step - self._last_train[1])
            if validated and self._step_s is not None:  # this step's time includes a validation
                self._val_s = max(0.0, per - self._step_s)
            else:
                self._step_s = per if self._step_s is None else 0.8 * self._step_s + 0.2 * per
        self._last_train = (now, ev.step)
        deadline, est = self.deadline, self.impute_estimate_s()
        if deadline is None or est is None or self._budget_end or self._stop.is_set():
            return
        # what follows a stop request: the current step, the engine's last validation, the final maps
        if now + est + (self._step_s or 0.0) + self._val_s + DEADLINE_MARGIN_S >= deadline:
            self._budget_end = True
            self.imputer.stop()

    def _as_seen(self, ev: ProgressEvent) -> ProgressEvent:
        """The event with the user's clock: seconds since the click, and left until the final maps."""
        now = time.perf_counter()
        if self._stop.is_set():
            return dataclasses.replace(
                ev,
                phase="stopping",
                elapsed_s=now - self.t_click,
                eta_s=None,
                message="stopping: final maps from the best model so far",
            )
        deadline, est = self.deadline, self.impute_estimate_s()
        if deadline is not None:
            eta = max(0.0, deadline - now)
        elif ev.eta_s is not None and est is not None:
            eta = ev.eta_s + est
        else:
            eta = None  # a step limit only, or no pass measured yet
        # a training step's text ("step N loss X") is for text consumers; the dock's loss plot shows
        # the step and the loss's running mean, and a second, raw loss beside it only confused
        message = "training" if ev.phase == "train" else ev.message
        return dataclasses.replace(ev, elapsed_s=now - self.t_click, eta_s=eta, message=message)

    def _preview(self, ev: ProgressEvent) -> TrainingPreview | None:
        """A preview now, or ``None`` when there will be no more (stop asked, final maps close)."""
        cost = self.pass_cost_s
        if self._stop.is_set() or self._budget_end:
            return None
        if cost is not None:
            deadline = self.deadline
            if deadline is not None:
                if time.perf_counter() + cost + self._layers_cost + self.impute_estimate_s() >= deadline:
                    return None
                if self.previews_cost_s + cost > PREVIEW_BUDGET_SHARE * self.budget_s:
                    return None  # later previews would take the training's time
            elif ev.eta_s is not None and ev.eta_s < 2.0 * cost:
                return None
        t = time.perf_counter()
        result = self.imputer.preview(self.slide, self.genes)
        if result is None:
            return None
        cost = time.perf_counter() - t
        out = TrainingPreview(self.genes, result, ev.step, ev.elapsed_s, 0.0)
        out.layers = result_layers(self.slide, out, self.source)
        self.pass_cost_s = cost
        self._layers_cost = time.perf_counter() - t - cost
        out.seconds = time.perf_counter() - t
        self.previews_cost_s += out.seconds
        self._last_train = None  # the next step's time does not include this preview
        return out


def next_preview_at(elapsed_s: float, cost_s: float) -> float:
    """Training time of the next preview after one at ``elapsed_s`` that took ``cost_s`` seconds.

    The gaps double (2, 4, 8, 16 s... of training: maps early, then rarely) and are never shorter
    than :data:`PREVIEW_COST_RATIO` times the preview's cost.
    """
    return max(2.0 * elapsed_s, elapsed_s + PREVIEW_COST_RATIO * cost_s)


def pending_layers(slide: Slide, genes: list[str], source: str = "values") -> dict:
    """The layers of a run as Train is clicked: measured stack and an empty imputed stack.

    The imputed stack covers the dense grid the run will fill (all NaN: nothing drawn yet); previews
    and the final maps then update it in place, because adding a layer while training runs would
    stall the viewer (~0.1-0.3 s on software OpenGL). Cheap and torch-free: built in the GUI thread.
    """
    from ..core.data.lattice import dense_positions
    from ..core.s2s.results import ImputedResult

    use = slide.usable()
    dr, dc = dense_positions(slide.array_row[use], slide.array_col[use], slide.kind)
    empty = ImputedResult(
        genes=list(genes),
        dense_rows=dr,
        dense_cols=dc,
        measured=np.zeros(dr.size, bool),
        values=np.full((dr.size, len(genes)), np.nan, np.float32),
        xy_px=None,
        kind=slide.kind,
        grid_to_world=slide.geometry.grid_to_world(),
        units=slide.geometry.units,
    )
    return result_layers(slide, TrainingPreview(list(genes), empty, 0, 0.0, 0.0), source)


def result_layers(slide: Slide, out: TrainingOutcome | TrainingPreview, source: str = "values") -> dict:
    """Layer data of a training outcome or preview: ``{"measured": ..., "imputed": ...}`` gene stacks.

    Both share the per-gene contrast limits of the measured values, so that side by side the same
    colour means the same value. ``source="model"`` shows the network's output at the measured spots
    too (see ``ImputedResult.grid``). A preview's imputed layer carries ``preview=True`` (it cannot
    be saved).
    """
    from .layers import gene_limits, gene_stack_layer, imputed_name, measured_name

    measured = slide.grid(out.genes)
    limits = gene_limits(measured.display()[0])
    if isinstance(out, TrainingPreview):
        what = f"preview, step {out.step}" if out.step else "training…"
        imputed = gene_stack_layer(
            slide,
            out.result.grid(source),
            "imputed",
            limits=limits,
            name=imputed_name(slide.name, what),
            preview=True,
            step=out.step,
            result=out.result,
            source=source,
        )
    else:
        imputed = gene_stack_layer(
            slide,
            out.result.grid(source),
            "imputed",
            limits=limits,
            name=imputed_name(slide.name),
            result=out.result,
            config=out.config,
            seconds=out.seconds,
            stopped=out.stopped,
            device=out.device,
            provenance=out.provenance,
            source=source,
        )
    return {
        "measured": gene_stack_layer(
            slide, measured, "measured", limits=limits, name=measured_name(slide.name, len(out.genes))
        ),
        "imputed": imputed,
    }


class ValidationJob(_Job):
    """Hold-out validation (design.md protocol) of ``method`` on ``slide`` for ``genes``.

    The method's ``predict`` runs in a thread of its own so that this generator keeps yielding
    heartbeats (with an ETA from the time budget). :meth:`stop` ends it: a method that trains (it
    has ``stop()``) ends after its current step, and the generator returns once that thread has
    ended (the outcome is dropped: hold-out numbers need the full run).
    """

    def __init__(
        self,
        slide: Slide,
        genes: list[str] | None,
        method: str = "s2s",
        budget_s: float | None = None,
        seed: int = 0,
        threads: int | None = None,
        options: dict | None = None,
        he_method: str | None = None,
        he_options: dict | None = None,
    ):
        """``he_method`` (with ``he_options``, see :func:`he_counterpart`) runs after ``method``
        on the same hold-out task; the outcome then compares the two per gene."""
        super().__init__()
        self.slide = slide
        self.genes = None if genes is None else list(genes)
        self.method = method
        self.he_method = he_method
        self.he_options = dict(he_options or {})
        self.budget_s = budget_s
        self.seed = seed
        self.threads = threads
        self.options = dict(options or {})
        self._running: list = []  # method objects that predict now (their stop() ends them)
        self._lock = threading.Lock()
        self._losses: list = []  # (step, loss) of the methods that train, not yet yielded
        self._last_step = 0  # steps so far, over the methods run one after the other

    def stop(self, abandon: bool = True) -> None:
        """Stop: the running method ends after its current training step; the outcome is dropped
        (whatever ``abandon`` says: it is there to match :meth:`TrainingJob.stop`)."""
        self._stop.set()
        with self._lock:
            running = list(self._running)
        for m in running:
            stop = getattr(m, "stop", None)
            if stop is not None:
                stop()

    def _started(self, method) -> None:
        with self._lock:
            self._running.append(method)
            offset = self._last_step  # a second method's steps follow the first's on the loss plot
        if hasattr(method, "on_progress"):
            method.on_progress = lambda ev: self._trained(ev, offset)
        if self._stop.is_set():
            self.stop()

    def _trained(self, ev, offset: int) -> None:
        """A training step of the method that predicts now (called in its thread)."""
        if getattr(ev, "phase", "") != "train" or getattr(ev, "loss", None) is None:
            return
        with self._lock:
            self._last_step = offset + int(ev.step)
            self._losses.append((self._last_step, float(ev.loss)))

    def _taken_losses(self) -> list:
        with self._lock:
            out, self._losses = self._losses, []
        return out

    def run(self) -> Iterator[Any]:
        from ..core.evaluation import benchmark
        from ..core.methods import MethodStopped, load_all

        t0 = time.perf_counter()
        yield ProgressEvent("validate", message="building the hold-out task")
        task, truth, meta = _call(
            benchmark.build_holdout, self.slide, genes=self.genes, seed=self.seed, budget_s=self.budget_s
        )
        methods = load_all()
        runs = [(self.method, self.options)]
        if self.he_method:
            runs.append((self.he_method, self.he_options))
        for name, _ in runs:
            if name not in methods:
                raise ValueError(f"method {name!r} is not available (known: {', '.join(sorted(methods))})")
        runs = [(name, _accepted(methods[name], opts)) for name, opts in runs]
        if self._stop.is_set():
            return
        box: queue.Queue = queue.Queue()

        def target():
            outcome = ("stopped", None)
            try:
                _set_threads(self.threads)
                preds = []
                for name, opts in runs:
                    if self._stop.is_set():
                        raise MethodStopped(name)
                    preds.append(benchmark.run_method(name, task, on_method=self._started, **opts)[0])
                outcome = ("ok", preds)
            except MethodStopped:
                pass
            except BaseException as exc:  # reported to the GUI thread
                outcome = ("error", exc)
            finally:
                self._idle.set()  # the work has ended before anyone hears of it
                box.put(outcome)

        # a daemon, so that a forgotten run never keeps the process alive; napari must not exit while torch
        # computes in it though (that aborted the process): the runner stops and waits for it at exit
        self._idle.clear()
        threading.Thread(target=target, name="s2s-validation", daemon=True).start()
        # methods that train use the time budget (each); the others take seconds and give no ETA
        budget = (self.budget_s or 0.0) * sum(_trains(name) for name, _ in runs)
        what = " and ".join(name for name, _ in runs)
        while True:
            try:
                status, value = box.get(timeout=0.1)
                break
            except queue.Empty:
                el = time.perf_counter() - t0
                if self._stop.is_set():
                    yield ProgressEvent("stopping", elapsed_s=el, message="stopping the validation…")
                    continue
                eta = budget - el if budget and budget > el else None
                after = "" if eta is not None or not budget else ": training done, predicting the hidden spots"
                message = f"validating {what}{after}"
                for step, loss in self._taken_losses():  # the loss curve, as in training
                    yield ProgressEvent("validate", step=step, loss=loss, elapsed_s=el, eta_s=eta, message=message)
                yield ProgressEvent("validate", step=self._last_step, elapsed_s=el, eta_s=eta, message=message)
        if status == "error":
            raise value
        if status == "stopped" or self._stop.is_set():
            return
        truth = np.asarray(truth, dtype=np.float64)
        out = self._outcome(task, truth, value[0], time.perf_counter() - t0)
        if self.he_method:
            out.he_method = self.he_method
            out.compared = compare_metrics(out.metrics, _metrics(list(task.genes), truth, value[1]))
        yield out

    def _outcome(self, task, truth: np.ndarray, pred: np.ndarray, seconds: float) -> ValidationOutcome:
        genes = list(task.genes)
        metrics = _metrics(genes, truth, pred)
        grid = self.slide.grid(genes)
        err = np.full_like(grid.values, np.nan)
        ii = np.asarray(task.target_rows) - grid.origin[0]
        jj = np.asarray(task.target_cols) - grid.origin[1]
        err[:, ii, jj] = (pred - truth).T
        grid.values = err
        return ValidationOutcome(
            genes=genes,
            metrics=metrics,
            error_grid=grid,
            method=self.method,
            seconds=seconds,
            n_measured=int(len(task.measured_rows)),
            n_hidden=int(len(task.target_rows)),
        )


def _trains(method: str) -> bool:
    """Whether a method trains for the time budget (S2S and its variants, DIST), as opposed to the
    classical baselines that take seconds."""
    return method == "dist" or method.startswith("s2s")


def _metrics(genes: list[str], truth: np.ndarray, pred: np.ndarray) -> dict[str, dict]:
    """Per gene ``{"pcc", "rmse", "mae"}`` of ``pred`` against ``truth`` ((t, G) each)."""
    from ..core.evaluation.metrics import mae, pcc, rmse

    return {
        g: {
            "pcc": pcc(truth[:, k], pred[:, k]),
            "rmse": rmse(truth[:, k], pred[:, k]),
            "mae": mae(truth[:, k], pred[:, k]),
        }
        for k, g in enumerate(genes)
    }


def _accepted(fn, kwargs: dict) -> dict:
    """The keyword arguments (not ``None``) that ``fn``'s signature accepts."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return {k: v for k, v in kwargs.items() if v is not None}


def _call(fn, *args, **kwargs):
    """Call ``fn`` with only the keyword arguments its signature accepts (and not ``None``)."""
    return fn(*args, **_accepted(fn, kwargs))
