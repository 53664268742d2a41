"""The S2S-ST engine facade: configuration, training, imputation, saving (no napari/Qt here).

``S2SImputer`` wraps a :class:`~napari_s2s.core.data.slide.Slide` around the array-level functions
(:meth:`S2SImputer.fit_arrays_iter`, :meth:`S2SImputer.impute_arrays`) that the benchmark's method
interface also uses. Typical use::

    imp = S2SImputer(S2SConfig.from_preset("fast", budget_s=60))
    for ev in imp.fit_iter(slide, genes):   # or imp.fit(slide, genes, callback=print)
        ...                                  # progress bar; imp.stop() from another thread
    result = imp.impute(slide)               # ImputedResult on the x2 dense grid
    adata = result.to_anndata(slide, imp.config, seconds)
"""

from __future__ import annotations

import dataclasses
import numbers
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ... import __version__
from ..errors import SlideError
from .device import DEVICE_NAMES, resolve_device
from .impute import dense_channels, dense_positions, final_consistency, predict_tta
from .results import ImputedResult  # noqa: F401  (re-exported: the engine's result type)
from .train import (
    NaturalSampler,
    ProgressEvent,
    TrainState,
    build_problem,
    cross_gene_reconstruction,
    make_model,
    spec_of,
    standardise,
    train_loop,
)

#: Architecture and optimiser settings of the presets (anything else comes from the field defaults).
PRESETS: dict[str, dict] = {
    # the paper's CDCIN: 3 cascades of RDN(G0=32, D=8, C=4, G=32) with HAB window 8; Adam lr 1e-4,
    # betas (0.5, 0.999), batch 16 + 16 natural-image crops, 32x32 windows of the measured lattice
    "paper": dict(
        cascades=3, features=32, blocks=8, layers=4, growth=32, window=8, attention=True, heads=4,
        mlp_ratio=4.0, patch=32, batch_size=32, natural_share=0.5, lr=1e-4, beta1=0.5,
    ),
    # small enough to train usefully on 2 CPU cores in about two minutes
    "fast": dict(
        cascades=2, features=16, blocks=2, layers=3, growth=16, window=8, attention=True, heads=2,
        mlp_ratio=2.0, patch=16, batch_size=16, natural_share=0.25, lr=3e-4, beta1=0.9,
    ),
}

_ARCH_KEYS = tuple(PRESETS["fast"].keys())


@dataclass
class S2SConfig:
    """Settings of S2S-ST training and imputation (typed, validated; ``to_dict``/``from_dict``).

    Architecture fields left ``None`` take the preset's value. Levers beyond the paper (defaults are
    the measured winners; see ``benchmarks/results/s2s_README.md``): ``loss`` ("mse" or "l1"), ``dc``
    (data consistency inside the cascade: "soft", "hard", "none"), ``base`` (the cascade starts from
    a smoother of the kept samples, "smooth", from the cross-gene smoother, "pca", or from the kept
    values, "zero"), ``adaptive`` (smoother bandwidths are ``sigmas`` times the leave-one-out
    bandwidth of the kept samples at each level, else ``sigmas`` in pitches), ``cross_gene``
    (PCA-denoised smoother channels), ``augment`` (lattice-keeping flips/rotations),
    ``early_stopping`` (model selection on ``val_frac`` held-out measured spots, at the dense scale
    with ``val_mode="dense"``; only when that makes at least ``min_val_spots`` spots, since smaller
    validation sets were measured to pick models at random), ``ema`` (exponential moving average of
    the weights; 0 turns it off), ``natural_share`` (fraction of each batch that is natural-image
    crops), ``tta`` (average the dense prediction over the lattice-keeping flips/rotations),
    ``threads`` (torch CPU threads, set inside the training call, i.e. the worker thread).
    """

    preset: str = "fast"
    cascades: int | None = None
    features: int | None = None
    blocks: int | None = None
    layers: int | None = None
    growth: int | None = None
    window: int | None = None
    attention: bool | None = None
    heads: int | None = None
    mlp_ratio: float | None = None
    patch: int | None = None
    batch_size: int | None = None
    natural_share: float | None = None
    lr: float | None = None
    beta1: float | None = None
    budget_s: float | None = 120.0
    max_steps: int | None = None
    device: str = "auto"
    seed: int = 0
    natural_images: bool = True
    natural_folder: str | None = None
    per_gene: bool = False
    loss: str = "mse"
    dc: str = "soft"
    base: str = "smooth"
    cross_gene: bool = True
    augment: bool = True
    early_stopping: bool = True
    val_frac: float = 0.1
    val_pixels: int = 30_000
    val_mode: str = "dense"
    min_val_spots: int = 30
    ema: float = 0.99
    val_every_frac: float = 0.1
    patience: int | None = None
    sigmas: tuple | None = None
    adaptive: bool = True
    min_window_frac: float = 0.5
    pca_components: int = 30
    max_pca_genes: int = 2000
    threads: int | None = None
    tile: int = 256
    tta: bool = True
    histology: str = "off"

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, not {self.preset!r}")
        for k, v in PRESETS[self.preset].items():
            if getattr(self, k) is None:
                setattr(self, k, v)
        if self.sigmas is None:
            self.sigmas = (0.5, 1.0, 2.0) if self.adaptive else (1.0, 2.0, 4.0)
        self.sigmas = tuple(float(s) for s in self.sigmas)
        ints = ("cascades", "features", "blocks", "layers", "growth", "window", "heads", "patch", "batch_size")
        for k in ints:
            v = getattr(self, k)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"{k} must be a positive integer, not {v!r}")
            setattr(self, k, int(v))
        if self.window < 2 and self.attention:
            raise ValueError("window must be >= 2 when attention is on")
        if self.budget_s is not None and not (_is_real(self.budget_s) and 0 < self.budget_s < float("inf")):
            raise ValueError(f"budget_s must be a finite number of seconds > 0, or None, not {self.budget_s!r}")
        if self.max_steps is not None and not (_is_int(self.max_steps) and self.max_steps >= 0):
            raise ValueError(f"max_steps must be a non-negative integer or None, not {self.max_steps!r}")
        if not (_is_int(self.seed) and 0 <= self.seed < 2**32):
            raise ValueError(f"seed must be an integer in [0, 2**32), not {self.seed!r}")
        for k in ("lr", "mlp_ratio", "tile", "pca_components", "max_pca_genes", "val_pixels"):
            v = getattr(self, k)
            if not (_is_real(v) and 0 < v < float("inf")):
                raise ValueError(f"{k} must be a finite number > 0, not {v!r}")
        for k in ("beta1", "val_every_frac", "min_window_frac"):
            v = getattr(self, k)
            if not (_is_real(v) and 0 <= v < 1 if k == "beta1" else _is_real(v) and 0 < v <= 1):
                raise ValueError(f"{k} must be in {'[0, 1)' if k == 'beta1' else '(0, 1]'}, not {v!r}")
        if self.budget_s is None and self.max_steps is None:
            raise ValueError("give a time budget (budget_s) and/or a step limit (max_steps)")
        if self.device not in DEVICE_NAMES:
            raise ValueError(f"device must be one of {', '.join(DEVICE_NAMES)}, not {self.device!r}")
        if self.loss not in ("mse", "l1"):
            raise ValueError(f"loss must be 'mse' or 'l1', not {self.loss!r}")
        if self.dc not in ("soft", "hard", "none"):
            raise ValueError(f"dc must be 'soft', 'hard' or 'none', not {self.dc!r}")
        if self.base not in ("smooth", "pca", "zero"):
            raise ValueError(f"base must be 'smooth', 'pca' or 'zero', not {self.base!r}")
        if not 0.0 <= float(self.natural_share) < 1.0:
            raise ValueError(f"natural_share must be in [0, 1), not {self.natural_share!r}")
        if self.val_mode not in ("dense", "sparse"):
            raise ValueError(f"val_mode must be 'dense' or 'sparse', not {self.val_mode!r}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), not {self.ema!r}")
        if not 0.0 <= self.val_frac < 0.5:
            raise ValueError(f"val_frac must be in [0, 0.5), not {self.val_frac!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, not {self.lr!r}")
        if self.threads is not None and not (_is_int(self.threads) and 1 <= self.threads <= 4096):
            raise ValueError(f"threads must be an integer from 1 to 4096, or None, not {self.threads!r}")
        if len(self.sigmas) < 1 or not all(0 < s < float("inf") for s in self.sigmas):
            raise ValueError("sigmas must be positive finite bandwidths")
        if self.histology not in ("off", "on", "auto"):
            raise ValueError(f"histology must be 'off', 'on' or 'auto', not {self.histology!r}")

    @classmethod
    def from_preset(cls, name: str = "fast", **overrides) -> "S2SConfig":
        """Config of preset ``name`` with any field overridden."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, not {name!r}")
        return cls(preset=name, **overrides)

    def to_dict(self) -> dict:
        """Plain dict (JSON- and checkpoint-safe)."""
        d = dataclasses.asdict(self)
        d["sigmas"] = list(self.sigmas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "S2SConfig":
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in dict(d).items() if k in names}
        if "sigmas" in kw:
            kw["sigmas"] = tuple(kw["sigmas"])
        return cls(**kw)

    @property
    def uses_natural(self) -> bool:
        return bool(self.natural_images and self.natural_share > 0)


def _is_real(v) -> bool:
    """A real number (not a bool, not a string)."""
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _is_int(v) -> bool:
    """An integer value (``3`` or ``3.0``; not a bool, NaN, infinity or string)."""
    return _is_real(v) and bool(np.isfinite(float(v))) and float(v) == int(v)


# ---------------------------------------------------------------------- imputer
def slide_training_arrays(slide, genes: list[str], max_pca_genes: int = 2000):
    """Measured arrays of a slide: rows, cols, values (n, G), and the cross-gene matrix (n, n')."""
    use = slide.usable()
    rows = slide.array_row[use]
    cols = slide.array_col[use]
    values = slide.lognorm(list(genes))
    allg = cross_gene_matrix(slide.lognorm_sparse(), max_pca_genes)
    return rows, cols, values, allg


def cross_gene_matrix(x, max_genes: int = 2000) -> np.ndarray | None:
    """Dense (m, n') matrix of genes detected in >= 10 % of spots (the ``max_genes`` most variable)."""
    if x is None:
        return None
    import scipy.sparse as sp

    x = sp.csr_matrix(x)
    m = x.shape[0]
    if m == 0:
        return None
    det = np.asarray((x > 0).sum(0)).ravel() / m
    keep = np.flatnonzero(det >= 0.10)
    if keep.size == 0:
        return None
    x = x[:, keep]
    if keep.size > max_genes:
        mean = np.asarray(x.mean(0)).ravel()
        var = np.asarray(x.multiply(x).mean(0)).ravel() - mean**2
        x = x[:, np.sort(np.argsort(-var, kind="stable")[:max_genes])]
    return x.toarray().astype(np.float32)


class S2SImputer:
    """Train S2S-ST on one slide and impute the x2 dense grid.

    Parameters
    ----------
    config
        :class:`S2SConfig` (default: the ``fast`` preset).
    """

    def __init__(self, config: S2SConfig | None = None):
        self.config = config or S2SConfig()
        self.genes: list[str] = []
        self.states: list[dict] = []  # one state dict (shared) or one per gene
        self.n_channels: int | None = None
        self.stats: dict = {}
        self.device_used: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._training: TrainState | None = None  # the state of the loop running now (for previews)

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        """Ask training to end at the next step (thread-safe); the best model so far is kept."""
        self._stop.set()

    @property
    def is_trained(self) -> bool:
        return bool(self.states)

    # ------------------------------------------------------------------ training
    def fit(self, slide, genes: list[str], callback: Callable[[ProgressEvent], None] | None = None) -> "S2SImputer":
        """Train on a slide (blocking); ``callback(event)`` receives every progress event."""
        for ev in self.fit_iter(slide, genes):
            if callback is not None:
                callback(ev)
        return self

    def fit_iter(self, slide, genes: list[str]) -> Iterator[ProgressEvent]:
        """Train on a slide, yielding :class:`ProgressEvent` objects (run it in a worker thread)."""
        genes = [str(g) for g in genes]
        if not genes:
            raise SlideError(slide.source, "no genes chosen for training")
        slide.gene_indices(genes)  # unknown names -> SlideError with close matches
        use = slide.usable()
        if int(use.sum()) < 16:
            raise SlideError(slide.source, f"too few spots to train ({int(use.sum())} usable in-tissue spots; need 16)")
        yield ProgressEvent("prepare", 0, self.config.max_steps, None, 0.0, None, "reading measured values")
        rows, cols, values, allg = slide_training_arrays(slide, genes, self.config.max_pca_genes)
        self.histology_used = resolve_histology(self.config.histology, slide)
        if self.histology_used:
            yield ProgressEvent("prepare", 0, self.config.max_steps, None, 0.0, None, "fitting the H&E term")
            values = self._histology(slide, genes, rows, cols, values).train_values
        yield from self.fit_arrays_iter(rows, cols, slide.kind, values, genes, all_genes=allg)

    def fit_arrays_iter(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        kind: str,
        values: np.ndarray,
        genes: list[str],
        all_genes: np.ndarray | None = None,
        covariates: Callable | None = None,
    ) -> Iterator[ProgressEvent]:
        """Train on measured arrays (the benchmark's entry point); yields progress events.

        Parameters
        ----------
        rows, cols
            (m,) lattice coordinates of the measured spots.
        kind
            ``"hex"`` or ``"square"``.
        values
            (m, G) log-normalised values.
        genes
            The G gene names.
        all_genes
            (m, n') values over many genes for the cross-gene channels (``None``: use ``values``).
        covariates
            Optional ``f(R, C) -> (n, K)`` per-position features at dense-grid coordinates (measured
            spots at ``(2 row, 2 col)``), e.g. histology features.
        """
        cfg = self.config
        self._stop.clear()
        t0 = time.perf_counter()
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        device = resolve_device(cfg.device)
        self.device_used = str(device)
        values = np.asarray(values, np.float32)
        rows = np.asarray(rows, np.int64)
        cols = np.asarray(cols, np.int64)
        if values.shape[0] < 16:
            raise SlideError(None, f"too few measured spots to train ({values.shape[0]}; need 16)")
        rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        mu, sd = standardise(values)
        z = (values - mu) / sd
        recon = None
        if cfg.cross_gene:
            recon = (cross_gene_reconstruction(values, all_genes, cfg.pca_components) - mu) / sd
        yield ProgressEvent("prepare", 0, cfg.max_steps, None, time.perf_counter() - t0, None, "building training windows")
        try:
            prob = build_problem(rows, cols, kind, z, cfg, recon, covariates, rng)
        except ValueError as exc:
            raise SlideError(None, str(exc)) from None
        natural = None
        if cfg.uses_natural:
            from .natural import load_natural_images

            yield ProgressEvent("prepare", 0, cfg.max_steps, None, time.perf_counter() - t0, None, "loading natural images")
            n_cov = prob.n_channels - make_model_channels(cfg)
            natural = NaturalSampler(load_natural_images(cfg.natural_folder), kind, prob.patch, cfg, n_cov)
        self.genes = list(genes)
        self.n_channels = prob.n_channels
        self.n_covariates = prob.n_channels - make_model_channels(cfg)
        groups = [None] if not cfg.per_gene else list(range(len(genes)))
        self.states = []
        total_steps = 0
        stopped = False
        state = TrainState()
        for gi, gene in enumerate(groups):
            torch.manual_seed(cfg.seed + gi)
            model = make_model(prob.n_channels, cfg)
            state = TrainState()
            # per-gene models share the budget and the step limit equally
            budget = None if cfg.budget_s is None else cfg.budget_s / len(groups)
            steps = None
            if cfg.max_steps is not None:
                steps = max(1, cfg.max_steps // len(groups)) if cfg.max_steps > 0 else 0
            if stopped:
                steps = 0  # a stop request ends the remaining genes' training too
            base_el = time.perf_counter() - t0
            self._training = state
            for ev in train_loop(
                model, prob, cfg, device, state, self._stop.is_set, natural, budget, steps, gene, rng
            ):
                msg = ev.message if gene is None else f"gene {genes[gene]} ({gi + 1}/{len(groups)}): {ev.message}"
                yield dataclasses.replace(
                    ev,
                    step=total_steps + ev.step,
                    max_steps=cfg.max_steps,
                    elapsed_s=base_el + ev.elapsed_s,
                    message=msg,
                )
            self._training = None
            total_steps += state.steps
            stopped = stopped or state.stopped
            self.states.append(state.best_state)
        seconds = time.perf_counter() - t0
        self.stats = {
            "steps": int(total_steps),
            "train_seconds": float(seconds),
            "steps_per_s": float(total_steps / max(seconds, 1e-9)),
            "best_val": None if state.best_val is None else float(state.best_val),
            "best_step": int(state.best_step),
            "stopped": bool(stopped),
            "early_stopped": bool(state.early_stopped),
            "patch": int(prob.patch),
            "device": self.device_used,
        }
        phase = "stopped" if stopped else "done"
        msg = f"{'stopped' if stopped else 'trained'}: {total_steps} steps in {seconds:.1f} s"
        yield ProgressEvent(phase, total_steps, cfg.max_steps, state.last_loss, seconds, 0.0, msg, state.best_val)

    # ------------------------------------------------------------------ imputation
    def _models(self) -> list:
        if not self.states:
            raise RuntimeError("the imputer is not trained (call fit or load a model first)")
        models = []
        for st in self.states:
            model = make_model(self.n_channels, self.config)
            model.load_state_dict(st)
            model.eval()
            models.append(model)
        return models

    def impute_arrays(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        kind: str,
        values: np.ndarray,
        target_rows: np.ndarray,
        target_cols: np.ndarray,
        all_genes: np.ndarray | None = None,
        covariates: Callable | None = None,
        genes: list[str] | None = None,
        tta: bool | None = None,
        models: list | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predict (t, G) log-normalised values at dense-grid targets from measured arrays.

        ``rows, cols`` are the measured spots' lattice coordinates, ``values`` (m, G) their values,
        targets are dense-grid coordinates (measured spots at ``(2 row, 2 col)``). Targets that are
        measured spots get the measured values exactly. Returns the predictions and the bool
        "measured" flag per target. ``tta`` overrides the config's test-time averaging; ``models``
        replaces the trained networks (e.g. the one being trained, for a preview).
        """
        pred = self.predict_arrays(
            rows, cols, kind, values, target_rows, target_cols, all_genes, covariates, genes, tta, models
        )
        return final_consistency(pred, target_rows, target_cols, rows, cols, values)

    def predict_arrays(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        kind: str,
        values: np.ndarray,
        target_rows: np.ndarray,
        target_cols: np.ndarray,
        all_genes: np.ndarray | None = None,
        covariates: Callable | None = None,
        genes: list[str] | None = None,
        tta: bool | None = None,
        models: list | None = None,
    ) -> np.ndarray:
        """The network's (t, G) output at the targets, measured spots included (see :meth:`impute_arrays`,
        which puts the measured values back)."""
        cfg = self.config
        tta = cfg.tta if tta is None else bool(tta)
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        device = resolve_device(cfg.device)
        values = np.asarray(values, np.float32)
        genes = list(genes) if genes is not None else list(self.genes)
        models = self._models() if models is None else list(models)
        if len(models) > 1:
            missing = [g for g in genes if g not in self.genes]
            if missing:
                raise SlideError(None, f"per-gene model has no network for gene(s) {', '.join(missing[:5])}")
        mu, sd = standardise(values)
        z = (values - mu) / sd
        recon = None
        if cfg.cross_gene:
            recon = (cross_gene_reconstruction(values, all_genes, cfg.pca_components) - mu) / sd
        tr = np.asarray(target_rows, np.int64)
        tc = np.asarray(target_cols, np.int64)
        ch, (r0, c0) = dense_channels(rows, cols, kind, z, cfg, tr, tc, recon, covariates)
        if len(models) == 1:
            pred_img = predict_tta(models[0], ch, kind, device, cfg.tile, tta)
        else:
            pred_img = np.zeros((len(genes),) + ch.shape[2:], np.float32)
            for i, g in enumerate(genes):
                m = models[self.genes.index(g)]
                pred_img[i] = predict_tta(m, ch[i : i + 1], kind, device, cfg.tile, tta)[0]
        pred = pred_img[:, tr - r0, tc - c0].T * sd + mu
        return np.maximum(pred, 0.0).astype(np.float32)

    def preview(self, slide, genes: list[str] | None = None) -> ImputedResult | None:
        """Dense maps from the weights being trained right now, without test-time averaging.

        A quick look while :meth:`fit_iter` runs: call it between two of its events, in the same
        thread (the loop does not charge the time to its budget). ``None`` when no shared model is
        being trained (before the first step, after training, or with per-gene models).
        """
        state = self._training
        model = None if state is None else state.live
        if model is None or self.config.per_gene or not state.steps:
            return None
        was = model.training
        try:
            return self.impute(slide, genes, tta=False, models=[model])
        finally:
            model.train(was)

    def impute(
        self, slide, genes: list[str] | None = None, tta: bool | None = None, models: list | None = None
    ) -> ImputedResult:
        """Impute the x2 dense grid of a slide (see :func:`~napari_s2s.core.s2s.impute.dense_positions`).

        ``tta`` overrides the config's test-time averaging; ``models`` the trained networks (see
        :meth:`impute_arrays`).
        """
        genes = list(genes) if genes is not None else list(self.genes)
        rows, cols, values, allg = slide_training_arrays(slide, genes, self.config.max_pca_genes)
        dr, dc = dense_positions(rows, cols, slide.kind)
        he = self._histology(slide, genes, rows, cols, values) if getattr(self, "histology_used", False) else None
        model = self.predict_arrays(
            rows, cols, slide.kind, values if he is None else he.train_values, dr, dc,
            all_genes=allg, genes=genes, tta=tta, models=models,
        )
        if he is not None:
            model = np.maximum(he.add_back(model, dr, dc), 0.0).astype(np.float32)
        pred, measured = final_consistency(model, dr, dc, rows, cols, values)
        xy = None
        g2p = slide.geometry.grid_to_px
        if g2p is not None:
            from ..data.lattice import apply_affine

            xy = apply_affine(g2p, dr / 2.0, dc / 2.0)
        return ImputedResult(
            genes=genes,
            dense_rows=dr,
            dense_cols=dc,
            measured=measured,
            values=pred,
            xy_px=xy,
            kind=slide.kind,
            grid_to_world=slide.geometry.grid_to_world(),
            units=slide.geometry.units,
            model_values=model,
        )

    def _histology(self, slide, genes, rows, cols, values) -> "HistologyTerm":
        """The slide's H&E term for these genes (computed once per slide and gene list)."""
        key = (id(slide), tuple(genes))
        cached = getattr(self, "_he_cache", None)
        if cached is None or cached[0] != key:
            self._he_cache = (key, HistologyTerm.fit(slide, rows, cols, values, seed=self.config.seed))
        return self._he_cache[1]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Save weights, config and genes (``torch.save``; reload with :meth:`load`)."""
        if not self.states:
            raise RuntimeError("nothing to save: the imputer is not trained")
        blob = {
            "format": "napari-s2s-model",
            "version": __version__,
            "config": self.config.to_dict(),
            "genes": list(self.genes),
            "n_channels": int(self.n_channels),
            "states": self.states,
            "stats": {k: v for k, v in self.stats.items() if isinstance(v, (int, float, str, bool)) or v is None},
        }
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(blob, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "S2SImputer":
        """Load a model saved by :meth:`save` (``weights_only=True``); bad files raise :class:`SlideError`."""
        path = Path(path)
        if not path.is_file():
            raise SlideError(path, "model file not found")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt, foreign or unsafe pickle
            raise SlideError(path, f"not a readable napari-s2s model ({type(exc).__name__})") from None
        if not isinstance(blob, dict) or blob.get("format") != "napari-s2s-model":
            raise SlideError(path, "not a napari-s2s model checkpoint")
        try:
            imp = cls(S2SConfig.from_dict(blob["config"]))
            imp.genes = [str(g) for g in blob["genes"]]
            imp.n_channels = int(blob["n_channels"])
            imp.states = list(blob["states"])
            imp.stats = dict(blob.get("stats", {}))
            imp._models()  # check the weights fit the architecture
        except Exception as exc:
            raise SlideError(path, f"corrupt napari-s2s model ({type(exc).__name__}: {exc})".splitlines()[0]) from None
        return imp


def make_model_channels(cfg: S2SConfig) -> int:
    """Input channels without covariates for a config."""
    from .sampling import n_input_channels

    return n_input_channels(len(cfg.sigmas), cfg.cross_gene, 0)


__all__ = [
    "ImputedResult",
    "PRESETS",
    "ProgressEvent",
    "S2SConfig",
    "S2SImputer",
    "cross_gene_matrix",
    "slide_training_arrays",
    "spec_of",
]


# ---------------------------------------------------------------------- histology guidance
def resolve_histology(mode: str, slide) -> bool:
    """Whether H&E guidance applies: ``on`` needs an image (else :class:`SlideError`), ``auto`` uses
    it when an image of sufficient resolution exists, ``off`` never."""
    if mode == "off":
        return False
    from ..data.histology_features import histology_available

    ok = histology_available(slide)
    if mode == "on" and not ok:
        raise SlideError(
            slide.source,
            "--histology on needs an H&E image with pixel positions (at least 4 image pixels per spot)",
        )
    return bool(ok)


@dataclass
class HistologyTerm:
    """``he_gaussian``'s histology term of a slide: S2S learns what the H&E does not explain.

    The term (a ridge model of the smoother's leave-one-out residual on per-spot H&E features,
    fitted on the measured spots) is taken out of the measured values before training, shifted so
    that what is left stays >= 0, and added back on the dense grid after imputation.
    """

    train_values: np.ndarray
    shift: np.ndarray
    dense_rows: np.ndarray
    dense_cols: np.ndarray
    term_dense: np.ndarray
    details: dict

    @classmethod
    def fit(cls, slide, rows, cols, values, seed: int = 0) -> "HistologyTerm":
        from ..methods.histology import histology_terms
        from .impute import dense_positions
        from ..methods import histology_view

        dr, dc = dense_positions(rows, cols, slide.kind)
        term_m, term_d, details = histology_terms(
            slide.kind, rows, cols, values, dr, dc, histology_view(slide), seed=seed
        )
        rest = np.asarray(values, np.float64) - term_m
        shift = np.maximum(0.0, -rest.min(axis=0))
        return cls((rest + shift).astype(np.float32), shift, dr, dc, term_d, details)

    def add_back(self, pred: np.ndarray, dense_rows: np.ndarray, dense_cols: np.ndarray) -> np.ndarray:
        """Undo the shift and add the histology term at the dense positions ``pred`` is given for."""
        if not (np.array_equal(dense_rows, self.dense_rows) and np.array_equal(dense_cols, self.dense_cols)):
            raise ValueError("histology term was fitted for another dense grid")
        return np.asarray(pred, np.float64) - self.shift + self.term_dense
