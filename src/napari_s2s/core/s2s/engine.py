"""The S2S-ST engine facade: training, imputation, saving (no napari/Qt here); settings in :mod:`.config`.

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

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from ... import __version__
from ..data.lattice import physical
from ..errors import SlideError
from ..smoothing.base import BasePredictor, mixture_from
from ..smoothing.kriging import Kriging
from .blend import (
    fold_error,
    kept_sources,
    lower_bound,
    network_oof,
    oof_genes,
    oof_phase_count,
    split_halves,
    weight_estimate,
    weighted_mse,
)
from .config import COUNT_LOSSES, LOSSES, PRESETS, S2SConfig  # noqa: F401  (re-exported)
from .device import resolve_device, use_bfloat16
from .genes import auxiliary_genes, sampling_weights, spatial_signal
from .impute import dense_channels, dense_positions, final_consistency, predict_symmetry, predict_tta
from .results import ImputedResult  # noqa: F401  (re-exported: the engine's result type)
from .sampling import symmetries
from .train import (
    NaturalSampler,
    ProgressEvent,
    TrainState,
    assign_folds,
    attach_counts,
    build_problem,
    coarse_problems,
    copy_state,
    cross_gene_reconstruction,
    hole_problems,
    make_members,
    make_model,
    spec_of,
    standardise,
    train_loop,
)


# ---------------------------------------------------------------------- imputer
def slide_training_arrays(slide, genes: list[str], max_pca_genes: int = 2000, names: bool = False):
    """Measured arrays of a slide: rows, cols, values (n, G), and the cross-gene matrix (n, n');
    with ``names``, also the gene name of each column of that matrix."""
    use = slide.usable()
    rows = slide.array_row[use]
    cols = slide.array_col[use]
    values = slide.lognorm(list(genes))
    allg, which = cross_gene_matrix(slide.lognorm_sparse(), max_pca_genes, columns=True)
    if names:
        return rows, cols, values, allg, [str(slide.genes[i]) for i in which]
    return rows, cols, values, allg


def cross_gene_matrix(x, max_genes: int = 2000, columns: bool = False):
    """Dense (m, n') matrix of genes detected in >= 10 % of spots (the ``max_genes`` most variable),
    or ``None``; with ``columns``, also the (n',) column of ``x`` of each."""
    none = (None, np.zeros(0, np.int64)) if columns else None
    if x is None:
        return none
    import scipy.sparse as sp

    x = sp.csr_matrix(x)
    m = x.shape[0]
    if m == 0:
        return none
    det = np.asarray((x > 0).sum(0)).ravel() / m
    keep = np.flatnonzero(det >= 0.10)
    if keep.size == 0:
        return none
    x = x[:, keep]
    if keep.size > max_genes:
        mean = np.asarray(x.mean(0)).ravel()
        var = np.asarray(x.multiply(x).mean(0)).ravel() - mean**2
        top = np.sort(np.argsort(-var, kind="stable")[:max_genes])
        x, keep = x[:, top], keep[top]
    out = x.toarray().astype(np.float32)
    return (out, keep) if columns else out


def gene_matrix_with_targets(all_genes: np.ndarray | None, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cross-gene matrix with the target genes in it once, and the column of each target gene.

    Columns of ``all_genes`` equal to a target gene's values are that gene's column; target genes
    not found are appended. A real-size matrix (above
    :data:`~napari_s2s.core.smoothing.pca.BLOCK_ABOVE` values) keeps its float32 and is compared
    through blocks of spots (no float64 copy).
    """
    from ..smoothing.pca import as_matrix

    vals = np.asarray(values, dtype=np.float64)
    if all_genes is None or np.asarray(all_genes).shape[1] == 0:
        return vals, np.arange(vals.shape[1])
    x = as_matrix(all_genes)
    diff = np.zeros((x.shape[1], vals.shape[1]))  # max |x[:, j] - values[:, g]| over the spots
    for a in range(0, x.shape[0], 16_384):
        xb = np.asarray(x[a : a + 16_384], dtype=np.float64)
        for g in range(vals.shape[1]):
            np.maximum(diff[:, g], np.abs(xb - vals[a : a + 16_384, g : g + 1]).max(axis=0), out=diff[:, g])
    cols = np.full(vals.shape[1], -1, np.int64)
    for g in range(vals.shape[1]):
        hit = np.flatnonzero(diff[:, g] < 1e-5)
        if hit.size:
            cols[g] = hit[0]
    missing = np.flatnonzero(cols < 0)
    if missing.size:
        cols[missing] = x.shape[1] + np.arange(missing.size)
        x = np.concatenate([x, vals[:, missing].astype(x.dtype)], axis=1)
    return x, cols


#: Fewest measured spots imputed at all (kriging needs a few).
MIN_BASE_SPOTS = 3
#: Fewest measured spots to train networks on; fewer get the base predictor, with a message.
MIN_TRAIN_SPOTS = 16
#: Fewest out-of-fold predictions to choose the blend weight on; fewer keep the base (weight 0).
MIN_OOF_PAIRS = 24


class S2SImputer:
    """Train S2S-ST on one slide and impute the x2 dense grid.

    A result is ``base + alpha * (networks - base)`` (see :mod:`napari_s2s.core.s2s.blend`):

    1. **Base**: the best non-learned predictor of the slide
       (:class:`~napari_s2s.core.smoothing.base.BasePredictor`: kriging, with or without PCA
       denoising over all genes and an H&E term, chosen by K-fold cross-validation over the measured
       spots).
    2. **Networks**: ``folds`` CDCIN networks trained sparser -> sparse on the measured spots (plus
       natural images), round-robin within the budget; network ``k`` never has the spots of fold
       ``k`` as targets. When the base has an H&E term, the networks learn what it does not explain.
    3. **Blend**: ``alpha`` in ``[0, 1]`` is chosen on the networks' out-of-fold predictions (each at
       its own fold's spots), against the base's predictions of the same spots: the least-squares
       weight lowered by ``blend_margin`` of its standard errors (what those spots support, not more).
       Where training does not help, ``alpha = 0`` and the result is the base; the networks are then
       not even run.

    Parameters
    ----------
    config
        :class:`S2SConfig` (default: the ``fast`` preset).
    """

    def __init__(self, config: S2SConfig | None = None):
        self.config = config or S2SConfig()
        self.genes: list[str] = []
        self.states: list[dict] = []
        self.n_channels: int | None = None
        self.alpha: float | None = None
        #: (G,) what is subtracted from the networks' log-normalised predictions (count losses: their
        #: mean excess over the measured values out of fold, ``log1p`` of a mean count being above the
        #: mean of ``log1p`` of counts); zeros otherwise
        self.net_shift: np.ndarray | None = None
        self.base: BasePredictor | None = None
        self.base_info: dict = {}
        self.stats: dict = {}
        self.device_used: str | None = None
        self.histology_used = False
        self._train_values: np.ndarray | None = None
        self._stop = threading.Event()
        self._training: dict | None = None  # what the loop is training now (for previews)
        #: columns of the cross-gene matrix trained on besides the user's genes (``aux_genes``)
        self.aux_genes: list[int] = []
        self.aux_gene_names: list[str] = []  # their names (training on a slide, not on bare arrays)
        self._features = None  # H&E feature function of the slide being trained
        #: measured seconds: ``base`` (base predictor + inputs of a dense imputation), ``pass`` (one
        #: network over the dense grid), ``oof`` (one network's out-of-fold predictions)
        self.timing: dict[str, float] = {}

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        """Ask training to end at the next step (thread-safe); the networks so far are kept."""
        self._stop.set()

    @property
    def is_trained(self) -> bool:
        return self.alpha is not None

    # ------------------------------------------------------------------ training
    def fit(self, slide, genes: list[str], callback: Callable[[ProgressEvent], None] | None = None) -> S2SImputer:
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
        if int(use.sum()) < MIN_BASE_SPOTS:
            raise SlideError(
                slide.source,
                f"too few spots to impute ({int(use.sum())} usable in-tissue spots; need {MIN_BASE_SPOTS})",
            )
        yield ProgressEvent("prepare", 0, self.config.max_steps, None, 0.0, None, "reading measured values")
        rows, cols, values, allg, names = slide_training_arrays(slide, genes, self.config.max_pca_genes, names=True)
        features = self._slide_features(slide)
        sizes = slide.size_factors() if self.config.loss in COUNT_LOSSES else None
        yield from self.fit_arrays_iter(
            rows, cols, slide.kind, values, genes, all_genes=allg, features=features, size_factors=sizes
        )
        self.aux_gene_names = [names[i] for i in self.aux_genes]

    def _slide_features(self, slide):
        """The slide's H&E feature function at dense-grid coordinates, or ``None`` (``histology``)."""
        if not resolve_histology(self.config.histology, slide):
            return None
        from ..data.histology_features import feature_function, histology_view

        return feature_function(histology_view(slide), slide.kind, scale=2.0)

    def fit_arrays_iter(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        kind: str,
        values: np.ndarray,
        genes: list[str],
        all_genes: np.ndarray | None = None,
        covariates: Callable | None = None,
        features: Callable | None = None,
        size_factors: np.ndarray | None = None,
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
            (m, n') values over many genes for cross-gene denoising and channels (``None``: ``values``).
        covariates
            Optional ``f(R, C) -> (n, K)`` extra network input channels at dense-grid coordinates
            (measured spots at ``(2 row, 2 col)``).
        features
            Optional ``f(R, C) -> (n, F)`` per-position image features (H&E) at dense-grid
            coordinates, offered to the base predictor (its H&E term).
        size_factors
            (m,) each spot's size factor (median library size over the spot's: ``Slide.size_factors``),
            the offset of the count losses (``None``: 1, values normalised upstream).
        """
        cfg = self.config
        self._stop.clear()
        self.aux_genes, self.aux_gene_names = [], []
        t0 = time.perf_counter()
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        device = resolve_device(cfg.device)
        self.device_used = str(device)
        values = np.asarray(values, np.float32)
        rows = np.asarray(rows, np.int64)
        cols = np.asarray(cols, np.int64)
        m = values.shape[0]
        if m < MIN_BASE_SPOTS:
            raise SlideError(None, f"too few measured spots to impute ({m}; need {MIN_BASE_SPOTS})")
        if m < MIN_TRAIN_SPOTS:
            yield from self._base_only(
                rows,
                cols,
                kind,
                values,
                genes,
                all_genes,
                features,
                t0,
                f"too few measured spots to train networks ({m}; need {MIN_TRAIN_SPOTS})",
            )
            return
        rng = np.random.default_rng(cfg.seed)
        with _blas_threads(cfg.threads):
            yield ProgressEvent(
                "prepare",
                0,
                cfg.max_steps,
                None,
                time.perf_counter() - t0,
                None,
                f"choosing the base predictor ({m} measured spots, cross-validated)",
            )
            # the cross-gene matrix with the targets: the base's PCA candidates and the auxiliary genes
            # share it (on a real-size slide it is a pass over ~1 GB)
            needs = cfg.base_model == "cv" or (bool(cfg.aux_genes or cfg.bandwidth_genes) and all_genes is not None)
            gm = gene_matrix_with_targets(all_genes, values) if needs else None
            base = self._fit_base(rows, cols, kind, values, all_genes, features, gm)
            if self._stop.is_set():  # Stop while the base was chosen: it is the best model so far
                yield from self._base_only(
                    rows, cols, kind, values, genes, all_genes, features, t0, "stopped before training", base
                )
                return
            term_meas = base.term_loo() if base.uses_histology and cfg.network_target == "residual" else None
            net_values = values if term_meas is None else (values - term_meas).astype(np.float32)
            mu, sd = standardise(net_values)
            yield ProgressEvent(
                "prepare", 0, cfg.max_steps, None, time.perf_counter() - t0, None, "building training windows"
            )
            folds = assign_folds(m, cfg.folds, rng, physical(rows, cols, kind) if cfg.fold_layout == "blocks" else None)
            z, recon, gene_p, standard = self._training_genes(rows, cols, kind, net_values, mu, sd, all_genes, gm)
            try:
                prior = _prior_function(base, kind, mu, sd, level="lattice") if cfg.base == "prior" else None
                bw_ref = self._bandwidth_reference(rows, cols, kind, gm)
                prob = build_problem(rows, cols, kind, z, cfg, recon, covariates, folds, prior, bw_ref)
                prob.targets, prob.gene_p = values.shape[1], gene_p
                if cfg.coarse_share:
                    prob.coarse = coarse_problems(
                        rows, cols, kind, z, cfg, recon, covariates, folds, bw_ref, prob.patch
                    )
                elif cfg.hole_share:
                    prob.coarse = hole_problems(
                        rows, cols, kind, z, cfg, recon, covariates, folds, bw_ref, prob.patch, cfg.seed
                    )
                for c in prob.coarse:
                    c.targets, c.gene_p = prob.targets, gene_p
                terms = self._phase_terms(base, prob, rows, cols, kind, term_meas, values, mu, sd)
                if cfg.loss in COUNT_LOSSES:
                    attach_counts(prob, *standard, terms, size_factors, cfg.loss == "nb")
            except ValueError as exc:  # e.g. spots too scattered for any training window
                prob = None
                why = str(exc)
        if prob is None:
            yield from self._base_only(rows, cols, kind, values, genes, all_genes, features, t0, why, base)
            return
        natural = None
        if cfg.uses_natural:
            from .natural import load_natural_images

            yield ProgressEvent(
                "prepare", 0, cfg.max_steps, None, time.perf_counter() - t0, None, "loading natural images"
            )
            n_cov = prob.n_channels - make_model_channels(cfg)
            sizes = cfg.natural_sizes[0] if len(cfg.natural_sizes) == 1 else cfg.natural_sizes
            tissue = None
            if cfg.tissue_share > 0 and features is not None:
                from .natural import tissue_images

                tissue = tissue_images(features, rows, cols)
            natural = NaturalSampler(
                load_natural_images(cfg.natural_folder, sizes), kind, prob.patch, cfg, n_cov, tissue, cfg.tissue_share
            )
        self.genes = list(genes)
        self.n_channels = prob.n_channels
        self.n_covariates = prob.n_channels - make_model_channels(cfg)
        members = make_members(prob.n_channels, prob.n_folds, cfg, device, cfg.seed)
        state = TrainState()
        self._training = {
            "members": members,
            "state": state,
            "prob": prob,
            "base": base,
            "mu": mu,
            "sd": sd,
            "values": values,
            "term": terms,
            "features": features,
        }
        base_el = time.perf_counter() - t0
        vgenes = oof_genes(prob, len(members), cfg.seed)
        vphases = oof_phase_count(prob, len(members))

        score_on = split_halves(prob.folds, cfg.seed) if cfg.checkpoint_split and cfg.checkpoints > 0 else None
        # ``checkpoint_split``: the measured spots that weigh the networks (the others score checkpoints)
        weigh_on = self._training["weigh_on"] = None if score_on is None else ~score_on

        def validate(member):
            return fold_error(member, prob, device, cfg.tile, vgenes, vphases, score_on)

        for ev in train_loop(
            members,
            prob,
            cfg,
            device,
            state,
            self._stop.is_set,
            natural,
            cfg.budget_s,
            cfg.max_steps,
            rng,
            validate=validate,
            checkpoints=cfg.checkpoints,
        ):
            yield dataclasses.replace(ev, elapsed_s=base_el + ev.elapsed_s)
        yield ProgressEvent(
            "prepare",
            state.steps,
            cfg.max_steps,
            state.last_loss,
            time.perf_counter() - t0,
            None,
            "weighing the networks against the base (out-of-fold)",
        )
        with _blas_threads(cfg.threads), _precision(device, cfg.precision):
            alpha, oof = self._choose_alpha(
                members, prob, base, values, mu, sd, terms, rows, cols, kind, features, device, weigh_on
            )
        self._training = None
        self.base = base
        self.alpha = alpha
        self.net_shift = oof.pop("shift", np.zeros(values.shape[1], np.float32))
        why = oof.pop("why", None)
        self.states = [copy_state(mem.evaluated) for mem in members]
        self._train_values = values
        self.histology_used = base.uses_histology
        self.base_info = base.describe()
        seconds = time.perf_counter() - t0
        self.stats = {
            "steps": int(state.steps),
            "train_seconds": float(state.seconds),
            "seconds": float(seconds),
            "steps_per_s": float(state.steps / max(state.seconds, 1e-9)),
            "stopped": bool(state.stopped),
            "networks": len(members),
            "alpha": float(alpha),
            "base": base.label,
            "oof": oof,
            "why": why,
            "patch": int(prob.patch),
            "device": self.device_used,
            "aux_genes": len(self.aux_genes),
            "best_steps": [m.best_step for m in members],
            "validation_s": float(state.validation_s),
        }
        phase = "stopped" if state.stopped else "done"
        verdict = self.verdict()
        msg = (
            f"{'stopped' if state.stopped else 'trained'}: {state.steps} steps in {state.seconds:.1f} s "
            f"({seconds:.1f} s with preparing and weighing); {verdict}"
        )
        yield ProgressEvent(phase, state.steps, cfg.max_steps, state.last_loss, seconds, 0.0, msg, oof.get("blend"))

    def final_cost_s(self, tta: bool | None = None) -> float | None:
        """Seconds the rest of a run should take once training stops: the last checkpoint scoring
        (with ``checkpoints``), the networks' out-of-fold predictions and the final dense maps
        (``tta``: every network over every symmetry), from the
        costs measured by the last :meth:`preview`; ``None`` before one. A preview whose networks did
        not clear the blend margin (the base alone) ran no network pass: one pass is then taken to cost
        one network's out-of-fold predictions in every phase (four phases of a quarter-size image: as many
        pixels)."""
        t = self.timing
        if not {"base", "oof"} <= set(t):
            return None
        tta = self.config.tta if tta is None else bool(tta)
        n = self.config.folds
        syms = len(symmetries(self._training["prob"].kind)) if tta and self._training else (4 if tta else 1)
        scoring = n * t["oof"] if self.config.checkpoints else 0.0  # about one out-of-fold pass per network
        return scoring + n * t["oof"] + t["base"] + n * syms * t.get("pass", t.get("oof_pass", t["oof"]))

    def _base_only(
        self, rows, cols, kind, values, genes, all_genes, features, t0, why: str, base: BasePredictor | None = None
    ) -> Iterator[ProgressEvent]:
        """No networks: the result is the base predictor (fitted here unless given), and the last event
        says why."""
        cfg = self.config
        if base is None:
            yield ProgressEvent(
                "prepare", 0, cfg.max_steps, None, time.perf_counter() - t0, None, "choosing the base predictor"
            )
            with _blas_threads(cfg.threads):
                base = self._fit_base(rows, cols, kind, values, all_genes, features)
        self.genes = list(genes)
        self.base, self.alpha, self.states, self._train_values = base, 0.0, [], values
        self.net_shift = np.zeros(values.shape[1], np.float32)
        self.histology_used = base.uses_histology
        self.base_info = base.describe()
        seconds = time.perf_counter() - t0
        self.stats = {
            "steps": 0,
            "train_seconds": 0.0,
            "seconds": float(seconds),
            "steps_per_s": 0.0,
            "stopped": self._stop.is_set(),
            "networks": 0,
            "alpha": 0.0,
            "base": base.label,
            "oof": {},
            "why": why,
            "device": self.device_used,
        }
        yield ProgressEvent(
            "done", 0, cfg.max_steps, None, seconds, 0.0, f"{why}: the result is the base predictor ({base.label})"
        )

    def verdict(self) -> str:
        """One line for users: how much of the result comes from the networks."""
        if self.alpha is None:
            return "not trained"
        label = self.stats.get("base", "the base predictor")
        if self.stats.get("why"):
            return f"{self.stats['why']}: the result is the base predictor ({label})"
        if self.alpha <= 0.0:
            oof = self.stats.get("oof", {})
            if oof.get("weight_ls", 0.0) > 0.0:
                return (
                    f"networks not used: their gain on held-out spots is too uncertain (weight "
                    f"{oof['weight_ls']:.2f} ± {oof['weight_se']:.2f}); the result is the base predictor ({label})"
                )
            return f"training did not beat the base predictor ({label}) on held-out spots: the result is the base"
        gain = self.stats.get("oof", {}).get("gain")
        if gain is None:
            more = ""
        elif gain < 0.0005:
            more = ", about the base's held-out error"
        else:
            more = f", {100 * gain:.1f} % less held-out error than the base"
        return f"networks weighted {self.alpha:.2f} against the base predictor ({label}){more}"

    def provenance(self) -> dict:
        """How the result was made, for ``uns['s2s']`` of a saved result (CLI and widget alike): training
        steps, whether the H&E term was used, the base predictor and its members, the auxiliary genes,
        the networks' weight (and the weight the held-out spots support), each network's kept
        checkpoint step and the verdict."""
        out = {
            "steps": int(self.stats.get("steps", 0)),
            "histology": bool(self.histology_used),
            "base": str(self.stats.get("base", "")),
        }
        if self.base_info:  # every member of the base predictor with its weight (one, or a stack)
            out["base_members"] = [f"{w:.3f} {c.label}" for c, w in mixture_from(self.base_info)]
        out["aux_genes"] = list(self.aux_gene_names)  # trained on, not imputed
        out["alpha"] = float(self.alpha or 0.0)
        oof = self.stats.get("oof", {})
        if "weight_ls" in oof:  # the weight the held-out spots support, and its standard error
            out["alpha_supported"] = [float(oof["weight_ls"]), float(oof["weight_se"])]
        best = [s for s in self.stats.get("best_steps", []) if s is not None]
        if best:  # checkpoint selection: the step of each network's kept weights (its own steps)
            out["best_steps"] = [int(s) for s in best]
        out["verdict"] = self.verdict()
        return out

    def _training_genes(self, rows, cols, kind, net_values, mu, sd, all_genes, gene_matrix):
        """The networks' training genes (standardised values, cross-gene channels or ``None``) and
        the probability of drawing each (``None``: uniform), and the mean and standard deviation of
        every training gene (what standardised them).

        First the user's genes (``net_values`` standardised by ``mu, sd``), then ``aux_genes`` more
        of the slide, the strongest by spatial signal (:mod:`.genes`) outside the user's (columns of
        ``gene_matrix``, :func:`gene_matrix_with_targets` of the measured values). With
        ``gene_sampling="uniform"`` the user's genes keep half of the draws whatever their number;
        with ``"signal"`` every gene is drawn in proportion to its signal.
        """
        cfg = self.config
        n_user = net_values.shape[1]
        train, mus, sds = np.asarray(net_values, np.float32), mu, sd
        phys = physical(rows, cols, kind)
        signal = spatial_signal(phys, net_values) if cfg.gene_sampling == "signal" else None
        self.aux_genes = []
        if cfg.aux_genes and all_genes is not None:
            x, tcols = gene_matrix
            sig_all = spatial_signal(phys, x)
            aux = auxiliary_genes(sig_all, tcols, cfg.aux_genes)
            if aux.size:
                xa = np.asarray(x[:, aux], np.float32)
                mu_a, sd_a = standardise(xa)
                train = np.hstack([train, xa])
                mus, sds = np.concatenate([mu, mu_a]), np.concatenate([sd, sd_a])
                if signal is not None:
                    signal = np.concatenate([signal, sig_all[aux]])
                self.aux_genes = [int(a) for a in aux]
        z = ((train - mus) / sds).astype(np.float32)
        recon = None
        if cfg.cross_gene:
            # the user's genes reconstructed on their own, exactly as at imputation (the number of
            # components is chosen over the genes reconstructed together: a joint reconstruction
            # with the auxiliary genes would give the networks other inputs in training than in use)
            parts = [cross_gene_reconstruction(net_values, all_genes, cfg.pca_components)]
            if self.aux_genes:
                parts.append(cross_gene_reconstruction(train[:, n_user:], all_genes, cfg.pca_components))
            recon = ((np.hstack(parts) - mus) / sds).astype(np.float32)
        if cfg.gene_sampling == "signal":
            gene_p = sampling_weights(signal)
        elif self.aux_genes:
            n_aux = len(self.aux_genes)
            gene_p = np.concatenate([np.full(n_user, 0.5 / n_user), np.full(n_aux, 0.5 / n_aux)])
        else:
            gene_p = None
        return z, recon, gene_p, (mus, sds)

    def _bandwidth_reference(self, rows, cols, kind, gene_matrix) -> np.ndarray | None:
        """(m, N) standardised values of the ``bandwidth_genes`` genes of the slide with the strongest
        spatial signal (columns of ``gene_matrix``), whose leave-one-out bandwidth sets the smoothers'
        at each level; ``None``: the user's genes set it (``bandwidth_genes == 0``, not ``adaptive``,
        or no gene with signal)."""
        cfg = self.config
        if not cfg.bandwidth_genes or not cfg.adaptive or gene_matrix is None:
            return None
        x = gene_matrix[0]
        top = auxiliary_genes(spatial_signal(physical(rows, cols, kind), x), np.zeros(0, np.int64), cfg.bandwidth_genes)
        if top.size == 0:
            return None
        xr = x[:, top]
        xr = np.asarray(xr.toarray() if hasattr(xr, "toarray") else xr, np.float32)
        mu, sd = standardise(xr)
        return ((xr - mu) / sd).astype(np.float32)

    def _fit_base(self, rows, cols, kind, values, all_genes, features, gene_matrix=None) -> BasePredictor:
        """The base predictor of the measured arrays (choice by cross-validation, or plain kriging);
        ``gene_matrix``: :func:`gene_matrix_with_targets` of the arrays when already computed."""
        cfg = self.config
        phys = physical(rows, cols, kind)
        f_meas = None if features is None else np.asarray(features(2 * rows, 2 * cols), np.float64)
        if cfg.base_model == "kriging":
            return BasePredictor(seed=cfg.seed, components=(), use_histology=False).fit(phys, values)
        x, tcols = gene_matrix_with_targets(all_genes, values) if gene_matrix is None else gene_matrix
        return BasePredictor(seed=cfg.seed, require_histology=cfg.histology == "on").fit(phys, values, x, tcols, f_meas)

    def _phase_terms(self, base, prob, rows, cols, kind, term_meas, values, mu, sd) -> list | None:
        """Per phase, (m, G) the H&E term the residual networks' targets and out-of-fold predictions
        take at the measured spots (``None`` without one): the leave-one-out term ``term_meas`` in
        every phase, or (``term_sources="kept"``) the term with the features smoothed from the phase's
        kept spots, whose targets then replace the problem's in that phase."""
        if term_meas is None:
            return None
        n_phases = len(prob.channels)
        if self.config.term_sources == "all":
            return [term_meas] * n_phases
        phys = physical(rows, cols, kind)
        terms, targets = [], []
        pix = prob.spot_pixels
        for p in range(n_phases):
            t = base.term_at(phys, base.features, sources=kept_sources(prob, p)).astype(np.float32)
            img = prob.target.copy()
            img[: values.shape[1], pix[:, 0], pix[:, 1]] = ((values - t - mu) / sd).T
            terms.append(t)
            targets.append(img)
        prob.phase_targets = targets
        return terms

    def _choose_alpha(
        self, members, prob, base, values, mu, sd, terms, rows, cols, kind, features, device, weigh_on=None
    ):
        """The blend weight from out-of-fold predictions, and the held-out errors behind it.
        ``terms``: per phase the (m, G) H&E term of the residual networks (:meth:`_phase_terms`);
        ``weigh_on``: only these measured spots' predictions (``checkpoint_split``; ``None``: all)."""
        from ..smoothing.gaussian import gene_weights

        cfg = self.config
        gsel = oof_genes(prob, len(members), cfg.seed)
        t0 = time.perf_counter()
        nph = oof_phase_count(prob, len(members))
        oof = network_oof(members, prob, device, cfg.tile, gsel, nph, weigh_on)
        self.timing["oof"] = (time.perf_counter() - t0) / max(len(members), 1)
        self.timing["oof_pass"] = self.timing["oof"] * len(prob.channels) / nph  # every phase: ~ a dense pass
        sd_all = sd
        values, mu, sd = values[:, gsel], mu[gsel], sd[gsel]
        gw = gene_weights(values)
        net = oof.network * sd + mu
        if terms is not None:
            net = net.astype(np.float64)
            for p in np.unique(oof.phases):
                sel = oof.phases == p
                net[sel] = net[sel] + terms[int(p)][oof.spots[sel]][:, gsel]
        truth = values[oof.spots].astype(np.float64)
        shift = np.zeros(len(sd_all), np.float32)
        if cfg.loss in COUNT_LOSSES and len(oof.spots):
            est = (np.maximum(net, 0.0) - truth).mean(0)
            shift[:] = np.median(est)
            shift[gsel] = est
            net = net - shift[gsel]
        if not len(oof.spots) or cfg.blend != "cv":
            alpha = {"cv": 0.0, "network": 1.0, "base": 0.0}[cfg.blend]
            return alpha, {"shift": shift, "pairs": int(len(oof.spots))}
        if len(oof.spots) < MIN_OOF_PAIRS:
            return 0.0, {
                "shift": shift,
                "pairs": int(len(oof.spots)),
                "why": f"too few held-out predictions ({len(oof.spots)}) to judge the networks",
            }
        phys = physical(rows, cols, kind)
        f_meas = (
            None
            if features is None or not base.uses_histology
            else np.asarray(features(2 * rows, 2 * cols), np.float64)
        )
        bas = np.empty_like(net, dtype=np.float64)
        for p in np.unique(oof.phases):
            sel = oof.phases == p
            idx = oof.spots[sel]
            bas[sel] = base.predict(
                phys[idx], None if f_meas is None else f_meas[idx], sources=kept_sources(prob, int(p))
            )[:, gsel]
        net = np.maximum(net, 0.0)
        bas = np.maximum(bas, 0.0)
        a_ls, a_se = weight_estimate(truth, bas, net, gw, oof.spots)
        alpha = lower_bound(a_ls, a_se, cfg.blend_margin)
        e_base = weighted_mse(truth, bas, gw)
        e_net = weighted_mse(truth, net, gw)
        e_blend = weighted_mse(truth, bas + alpha * (net - bas), gw)
        return alpha, {
            "shift": shift,
            "pairs": int(len(oof.spots)),
            "genes": int(len(gsel)),
            "base": e_base,
            "network": e_net,
            "blend": e_blend,
            "gain": float(1.0 - e_blend / e_base) if e_base > 0 else 0.0,
            "weight_ls": a_ls,
            "weight_se": a_se,
        }

    # ------------------------------------------------------------------ imputation
    def _models(self, states: list | None = None) -> list:
        states = self.states if states is None else states
        if not states:
            raise RuntimeError("the imputer is not trained (call fit or load a model first)")
        models = []
        for st in states:
            model = make_model(self.n_channels, self.config)
            model.load_state_dict(st)
            model.eval()
            models.append(model)
        return models

    def _base_for(self, rows, cols, kind, values, all_genes, features) -> BasePredictor:
        """The fitted base when ``values`` are the training values, else the same choice refitted."""
        if (
            self.base is not None
            and self._train_values is not None
            and values.shape == self._train_values.shape
            and np.array_equal(values, self._train_values)
        ):
            return self.base
        if not self.base_info:
            raise RuntimeError("the imputer is not trained (call fit or load a model first)")
        info = self.base_info
        phys = physical(rows, cols, kind)
        f_meas = (
            None
            if features is None or not info.get("histology")
            else np.asarray(features(2 * rows, 2 * cols), np.float64)
        )
        x, tcols = gene_matrix_with_targets(all_genes, values)
        if info.get("histology") and f_meas is None:
            raise SlideError(None, "this model uses the H&E term: the slide needs its image")
        mixture = mixture_from(info, histology=f_meas is not None)
        k = info["kriging"]
        return BasePredictor(seed=self.config.seed).refit(
            phys, values, Kriging(float(k["nu"]), float(k["ell"]), float(k["snr"])), mixture, x, tcols, f_meas
        )

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
        features: Callable | None = None,
        tta: bool | None = None,
        models: list | None = None,
        alpha: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predict (t, G) log-normalised values at dense-grid targets from measured arrays.

        ``rows, cols`` are the measured spots' lattice coordinates, ``values`` (m, G) their values,
        targets are dense-grid coordinates (measured spots at ``(2 row, 2 col)``). Targets that are
        measured spots get the measured values exactly. Returns the predictions and the bool
        "measured" flag per target. ``tta`` overrides the config's test-time averaging; ``models``
        and ``alpha`` replace the trained networks and their weight (e.g. for a preview).
        """
        pred = self.predict_arrays(
            rows, cols, kind, values, target_rows, target_cols, all_genes, covariates, features, tta, models, alpha
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
        features: Callable | None = None,
        tta: bool | None = None,
        models: list | None = None,
        alpha: float | None = None,
    ) -> np.ndarray:
        """The (t, G) blend of base and networks at the targets, measured spots included (see
        :meth:`impute_arrays`, which puts the measured values back)."""
        cfg = self.config
        tta = cfg.tta if tta is None else bool(tta)
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        device = resolve_device(cfg.device)
        values = np.asarray(values, np.float32)
        rows = np.asarray(rows, np.int64)
        cols = np.asarray(cols, np.int64)
        tr = np.asarray(target_rows, np.int64)
        tc = np.asarray(target_cols, np.int64)
        alpha = self.alpha if alpha is None else float(alpha)
        if alpha is None:
            raise RuntimeError("the imputer is not trained (call fit or load a model first)")
        t0 = time.perf_counter()
        with _blas_threads(cfg.threads):
            base = self._base_for(rows, cols, kind, values, all_genes, features)
            phys_t = physical(tr / 2.0, tc / 2.0, kind)
            f_t = np.asarray(features(tr, tc), np.float64) if base.uses_histology else None
            b, term_t = base.predict_parts(phys_t, f_t)
            silent = ~np.any(values != 0, axis=0)  # genes without a count at any measured spot: 0
            b[:, silent] = 0.0
            if alpha <= 0.0:
                self.timing["base"] = time.perf_counter() - t0
                return np.maximum(b, 0.0).astype(np.float32)
            term_meas = base.term_loo() if base.uses_histology and cfg.network_target == "residual" else None
            net_values = values if term_meas is None else (values - term_meas).astype(np.float32)
            mu, sd = standardise(net_values)
            z = (net_values - mu) / sd
            recon = None
            if cfg.cross_gene:
                recon = (cross_gene_reconstruction(net_values, all_genes, cfg.pca_components) - mu) / sd
            prior = _prior_function(base, kind, mu, sd, level="dense") if cfg.base == "prior" else None
            bw_ref = None
            if cfg.bandwidth_genes and cfg.adaptive:
                bw_ref = self._bandwidth_reference(rows, cols, kind, gene_matrix_with_targets(all_genes, values))
            ch, (r0, c0) = dense_channels(rows, cols, kind, z, cfg, tr, tc, recon, covariates, prior, bw_ref)
        models = self._models() if models is None else list(models)
        syms = symmetries(kind)
        acc = None
        t1 = time.perf_counter()
        with _precision(device, cfg.precision):
            for k, model in enumerate(models):
                out = (
                    predict_tta(model, ch, kind, device, cfg.tile, True)
                    if tta
                    else predict_symmetry(model, ch, syms[k % len(syms)], device, cfg.tile)
                )
                acc = out if acc is None else acc + out
        passes = len(models) * (len(syms) if tta else 1)
        self.timing["base"] = t1 - t0
        self.timing["pass"] = (time.perf_counter() - t1) / passes
        net = (acc / len(models))[:, tr - r0, tc - c0].T * sd + mu
        if term_meas is not None:
            net = net + term_t
        if self.net_shift is not None:
            net = net - self.net_shift
        net = np.maximum(net, 0.0)
        net[:, silent] = 0.0
        b = np.maximum(b, 0.0)
        return (b + alpha * (net - b)).astype(np.float32)

    def preview(self, slide, genes: list[str] | None = None) -> ImputedResult | None:
        """Dense maps as they would be if training ended now, from the first network being trained.

        The first network's out-of-fold predictions set a provisional blend weight; no test-time
        averaging. Call it between two events of :meth:`fit_iter`, in the same thread (the loop does
        not charge the time to its budget). ``None`` when nothing is being trained.
        """
        tr = self._training
        if tr is None or not tr["state"].steps:
            return None
        mem = tr["members"][0]
        device = resolve_device(self.config.device)
        model = mem.evaluated
        was = model.training
        try:
            rows, cols, values, allg = slide_training_arrays(slide, self.genes, self.config.max_pca_genes)
            with _blas_threads(self.config.threads), _precision(device, self.config.precision):
                alpha, info = self._choose_alpha(
                    [mem],
                    tr["prob"],
                    tr["base"],
                    tr["values"],
                    tr["mu"],
                    tr["sd"],
                    tr["term"],
                    rows,
                    cols,
                    slide.kind,
                    tr["features"],
                    device,
                    tr["weigh_on"],
                )
            saved = (self.base, self._train_values, self.base_info, self.net_shift)
            self.base, self._train_values, self.base_info = tr["base"], tr["values"], tr["base"].describe()
            self.net_shift = info.get("shift")
            try:
                return self.impute(slide, genes, tta=False, models=[model], alpha=alpha)
            finally:
                self.base, self._train_values, self.base_info, self.net_shift = saved
        finally:
            model.train(was)

    def impute(
        self,
        slide,
        genes: list[str] | None = None,
        tta: bool | None = None,
        models: list | None = None,
        alpha: float | None = None,
    ) -> ImputedResult:
        """Impute the x2 dense grid of a slide (see :func:`~napari_s2s.core.s2s.impute.dense_positions`).

        ``tta`` overrides the config's test-time averaging; ``models`` and ``alpha`` the trained
        networks and their weight (see :meth:`impute_arrays`).
        """
        genes = list(genes) if genes is not None else list(self.genes)
        rows, cols, values, allg = slide_training_arrays(slide, genes, self.config.max_pca_genes)
        dr, dc = dense_positions(rows, cols, slide.kind)
        features = self._slide_features(slide) if (self.histology_used or self.base_info.get("histology")) else None
        model = self.predict_arrays(
            rows,
            cols,
            slide.kind,
            values,
            dr,
            dc,
            all_genes=allg,
            features=features,
            tta=tta,
            models=models,
            alpha=alpha,
        )
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

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Save the networks, their weight, the base predictor's choice, config and genes
        (``torch.save``; reload with :meth:`load`)."""
        if not self.is_trained:
            raise RuntimeError("nothing to save: the imputer is not trained")
        blob = {
            "format": "napari-s2s-model",
            "version": __version__,
            "config": self.config.to_dict(),
            "genes": list(self.genes),
            "n_channels": int(self.n_channels),
            "states": self.states,
            "alpha": float(self.alpha),
            "net_shift": torch.as_tensor(np.asarray(self.net_shift if self.net_shift is not None else [], np.float32)),
            "base": _plain(self.base_info),
            "stats": _plain(self.stats),
        }
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(blob, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> S2SImputer:
        """Load a model saved by :meth:`save` (``weights_only=True``); bad files raise :class:`SlideError`.

        The base predictor is refitted on the slide it imputes, with the saved choice and kriging
        parameters (no cross-validation).
        """
        path = Path(path)
        if not path.is_file():
            raise SlideError(path, "model file not found")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt, foreign or unsafe pickle
            raise SlideError(path, f"not a readable napari-s2s model ({type(exc).__name__})") from None
        if not isinstance(blob, dict) or blob.get("format") != "napari-s2s-model":
            raise SlideError(path, "not a napari-s2s model checkpoint")
        if "alpha" not in blob or "base" not in blob:
            raise SlideError(path, "a model of an older napari-s2s (no base predictor): train it again")
        try:
            imp = cls(S2SConfig.from_dict(blob["config"]))
            imp.genes = [str(g) for g in blob["genes"]]
            imp.n_channels = int(blob["n_channels"])
            imp.states = list(blob["states"])
            imp.alpha = float(blob["alpha"])
            shift = np.asarray(blob.get("net_shift", []), np.float32)
            imp.net_shift = shift if shift.shape == (len(imp.genes),) else np.zeros(len(imp.genes), np.float32)
            imp.base_info = dict(blob["base"])
            imp.histology_used = bool(imp.base_info.get("histology"))
            imp.stats = dict(blob.get("stats", {}))
            imp._models()  # check the weights fit the architecture
        except Exception as exc:
            raise SlideError(path, f"corrupt napari-s2s model ({type(exc).__name__}: {exc})".splitlines()[0]) from None
        return imp


def _plain(x):
    """JSON-like copy (dicts, lists, str, numbers, bool, None) for checkpoints loaded with ``weights_only``."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x)
    if x is None or isinstance(x, str):
        return x
    return str(x)


@contextlib.contextmanager
def _blas_threads(threads: int | None):
    """Limit the BLAS/LAPACK threads of numpy and scipy to ``threads`` (no limit when ``None``).

    The base predictor's small factorisations were measured ~10x slower with two BLAS threads on a
    busy 2-core machine than with one (thread hand-offs dominate).
    """
    if not threads:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=int(threads), user_api="blas"):
        yield


def _precision(device: torch.device, precision: str):
    """Autocast context for inference in the configured precision (see :func:`.device.use_bfloat16`)."""
    if use_bfloat16(device, precision):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_model_channels(cfg: S2SConfig) -> int:
    """Input channels without covariates for a config."""
    from .sampling import n_input_channels

    return n_input_channels(len(cfg.sigmas), cfg.cross_gene, 0, cfg.base == "prior")


def _prior_function(base: BasePredictor, kind: str, mu: np.ndarray, sd: np.ndarray, level: str) -> Callable:
    """The networks' prior channel: the base predictor's smoother part, standardised like their
    values (``(x - mu) / sd``).

    ``level="lattice"`` (training): ``f(sources, r, c)`` at measured-lattice coordinates from the
    measured spots ``sources`` (one phase's kept spots); ``level="dense"`` (imputation):
    ``f(R, C)`` at dense-grid coordinates from every measured spot.
    """
    if level == "lattice":

        def at_lattice(sources, r, c):
            return (base.smooth(physical(r, c, kind), sources=sources) - mu) / sd

        return at_lattice

    def at_dense(R, C):
        return (base.smooth(physical(np.asarray(R) / 2.0, np.asarray(C) / 2.0, kind)) - mu) / sd

    return at_dense


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
            "H&E guidance 'on' needs an H&E image with pixel positions (at least 4 image pixels per spot)",
        )
    return bool(ok)
