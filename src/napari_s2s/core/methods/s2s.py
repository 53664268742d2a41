"""S2S-ST as a benchmark method (``s2s``) and its ablations (``s2s-<what>``).

The benchmark's task holds the measured spots on the 1/4 sub-lattice of the slide (absolute array
coordinates) and the hidden spots as targets. The measured sub-lattice is a lattice of double pitch:
its own lattice coordinates are ``((row - a) / 2, (col - b) / 2)`` for the sub-lattice's offset
``(a, b)``, and the slide's spots are then exactly the x2 dense grid ``(row - a, col - b)`` of that
lattice. So the method trains sparser -> sparse on the measured spots and predicts the dense level,
with the same engine as ``napari-s2s impute``. The training budget is ``task.budget_s`` (default
120 s); the seed is ``task.seed``; torch runs on one thread unless ``threads`` is given (on a shared
2-core machine, two threads were ~5x slower per step than one).

Ablations carry ``ablation = True`` (a benchmark may leave them out of its default method list).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from ..events import ProgressEvent
from ..s2s.engine import S2SConfig, S2SImputer, cross_gene_matrix
from .base import ImputationTask, MethodStopped, register

#: Default training budget (seconds) when the task gives none.
DEFAULT_BUDGET_S = 120.0


def to_lattice(task: ImputationTask) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Measured-lattice coordinates of the measured spots and dense-grid coordinates of the targets.

    Raises
    ------
    ValueError
        When the measured spots are not on one stride-2 sub-lattice of the array grid.
    """
    rows = np.asarray(task.measured_rows, np.int64)
    cols = np.asarray(task.measured_cols, np.int64)
    a, b = int(rows[0] % 2), int(cols[0] % 2)
    if np.any(rows % 2 != a) or np.any(cols % 2 != b):
        raise ValueError("measured spots are not on one stride-2 sub-lattice of the array grid")
    lr, lc = (rows - a) // 2, (cols - b) // 2
    if task.kind == "hex" and np.unique((lr + lc) % 2).size != 1:
        raise ValueError("measured spots are not on a hex sub-lattice of double pitch")
    tr = np.asarray(task.target_rows, np.int64) - a
    tc = np.asarray(task.target_cols, np.int64) - b
    return lr, lc, tr, tc


class S2SMethod:
    """The S2S-ST method: train on the task's measured spots, predict its targets.

    Parameters
    ----------
    preset
        ``"fast"`` (default) or ``"paper"``.
    he_channels
        H&E principal components given to the networks as extra input channels (0: none; the H&E
        term of the base predictor is separate, see ``histology``).
    **overrides
        Any :class:`~napari_s2s.core.s2s.engine.S2SConfig` field (``histology``: ``"auto"`` by
        default, so the base may use the slide's H&E when the task has one).
    """

    name = "s2s"

    def __init__(self, preset: str = "fast", he_channels: int = 0, **overrides) -> None:
        self.preset = preset
        self.he_channels = int(he_channels)
        self.overrides = dict(overrides)
        self.details_: dict | None = None
        self.stop_requested = threading.Event()
        #: Called with each training :class:`~napari_s2s.core.events.ProgressEvent` of :meth:`predict`
        #: (in the thread that predicts; the dock's validation shows the steps and the loss curve).
        self.on_progress: Callable[[ProgressEvent], None] | None = None

    def stop(self) -> None:
        """End a running :meth:`predict` after the current training step (it raises ``MethodStopped``)."""
        self.stop_requested.set()

    def config_for(self, task: ImputationTask) -> S2SConfig:
        """The config used for a task (budget and seed from the task unless overridden)."""
        kw = dict(self.overrides)
        kw.setdefault("budget_s", task.budget_s if task.budget_s is not None else DEFAULT_BUDGET_S)
        kw.setdefault("seed", int(task.seed))
        kw.setdefault("threads", 1)  # benchmark machines are shared; one thread is also the fair comparison
        return S2SConfig.from_preset(self.preset, **kw)

    def task_inputs(self, task: ImputationTask) -> tuple:
        """What :meth:`predict` gives the engine for a task: ``(config, rows, cols, target_rows,
        target_cols, features, covariates)`` (lattice coordinates as :func:`to_lattice`; the H&E feature
        function of the base's term and the H&E channels of the networks, ``None`` where unused)."""
        from ..data.histology_features import covariate_function, feature_function, histology_available

        cfg = self.config_for(task)
        lr, lc, tr, tc = to_lattice(task)
        # the dense grid of the measured lattice is the slide's array grid minus the sub-lattice offset
        offset = (int(task.measured_rows[0] - 2 * lr[0]), int(task.measured_cols[0] - 2 * lc[0]))
        usable = histology_available(task.histology, kind=task.kind)
        if cfg.histology == "on" and not usable:
            raise ValueError(f"{self.name} needs an H&E image and pixel positions")
        features = covariates = None
        if usable and cfg.histology != "off":
            features = feature_function(task.histology, task.kind, scale=1.0, offset=offset)
        if usable and self.he_channels:
            covariates = covariate_function(
                task.histology,
                task.kind,
                task.measured_rows,
                task.measured_cols,
                scale=1.0,
                offset=offset,
                n_components=self.he_channels,
            )
        return cfg, lr, lc, tr, tc, features, covariates

    def predict(self, task: ImputationTask) -> np.ndarray:
        cfg, lr, lc, tr, tc, features, covariates = self.task_inputs(task)
        imp = S2SImputer(cfg)
        values = np.asarray(task.measured_values, np.float32)
        allg = cross_gene_matrix(task.measured_all_genes) if task.measured_all_genes is not None else None
        train_until_stopped(
            imp,
            self.stop_requested,
            lr,
            lc,
            task.kind,
            values,
            list(task.genes),
            all_genes=allg,
            covariates=covariates,
            features=features,
            on_progress=self.on_progress,
        )
        pred, _ = imp.impute_arrays(
            lr, lc, task.kind, values, tr, tc, all_genes=allg, covariates=covariates, features=features
        )
        self.details_ = dict(imp.stats, base_detail=imp.base_info)
        return pred.astype(np.float64)


def train_until_stopped(
    imp: S2SImputer,
    stop: threading.Event,
    *args,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    **kwargs,
) -> None:
    """``imp.fit_arrays_iter(*args, **kwargs)`` to the end, unless ``stop`` is set: then training ends
    after the current step and :class:`~napari_s2s.core.methods.base.MethodStopped` is raised.
    ``on_progress`` receives every progress event on the way."""
    for ev in imp.fit_arrays_iter(*args, **kwargs):
        if on_progress is not None:
            on_progress(ev)
        if stop.is_set():
            imp.stop()
    if stop.is_set():
        raise MethodStopped("stopped")


def _factory(name: str, preset: str = "fast", needs_histology: bool = False, **fixed):
    def make(**options) -> S2SMethod:
        kw = dict(fixed)
        kw.update(options)
        p = kw.pop("preset", preset)
        m = S2SMethod(p, **kw)
        m.name = name
        return m

    make.__name__ = f"make_{name.replace('-', '_')}"
    make.__doc__ = f"Factory of the ``{name}`` method ({preset} preset, {fixed or 'defaults'})."
    make.ablation = name not in ("s2s", "s2s-he")
    make.needs_histology = needs_histology
    return make


#: Ablations: name -> config overrides (each switches one lever off, or to another choice).
ABLATIONS: dict[str, dict] = {
    # what the result is made of
    "s2s-base": {"blend": "base"},  # the base predictor alone (no network: non-learned)
    "s2s-network": {"blend": "network"},  # the networks alone (no base, no fallback)
    "s2s-kriging": {"base_model": "kriging"},  # plain kriging as the base (no PCA, no H&E)
    "s2s-nohe": {"histology": "off"},
    "s2s-aux": {"aux_genes": 30},  # + 30 genes of the slide with the strongest spatial signal, trained on
    "s2s-signal": {"gene_sampling": "signal"},  # genes drawn in proportion to their spatial signal
    "s2s-hechan": {"he_channels": 4},  # + H&E channels as network inputs
    # the networks
    "s2s-attn": {"attention": True},
    "s2s-nocross": {"cross_gene": False},
    "s2s-zero": {"base": "zero"},
    "s2s-l1": {"loss": "l1"},
    "s2s-harddc": {"dc": "hard"},
    "s2s-nonatural": {"natural_images": False},
    "s2s-noaug": {"augment": False},
    "s2s-tta": {"tta": True},
    "s2s-noema": {"ema": 0.0},
    "s2s-fixedbw": {"adaptive": False},
    "s2s-folds2": {"folds": 2},
    "s2s-folds8": {"folds": 8},
    "s2s-paper": {"preset": "paper"},
}

register("s2s")(_factory("s2s"))
# s2s with the H&E term required (the slide must have a usable image); `s2s` uses it when there is one
register("s2s-he")(_factory("s2s-he", needs_histology=True, histology="on"))
for _name, _kw in ABLATIONS.items():
    register(_name)(_factory(_name, **_kw))
