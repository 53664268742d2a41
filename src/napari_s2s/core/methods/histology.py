"""Histology-guided imputation: ``he_gaussian``, its control ``he_gaussian-permuted``, and ``s2s-he``.

``he_gaussian`` is the ``gaussian`` baseline plus a ridge model of what the smoother misses, read
from the H&E image (:mod:`napari_s2s.core.data.histology_features`).

Model (a partially linear model). Expression is a smooth spatial field plus a linear effect of the
tissue under the spot: ``y(x) = g(x) + h(x) @ beta + noise``. The Gaussian smoother ``S`` (weights
of the ``gaussian`` baseline, bandwidth by leave-one-out on the measured spots) removes most of
``g``, so the smoother's residual follows the *histology's* residual under the same smoother::

    y_i - S_{-i} y  ~  (h_i - S_{-i} h) @ beta          at measured spot i (leave-one-out weights)
    y(t)            =  S y (t) + (h(t) - S h (t)) @ beta at a target t     (the prediction)

The raw features ``h`` are predictors too (``design="both"``, the default): the smoother's error is
not only a missed tissue effect but also a bias that depends on the tissue itself (at the tissue's
edge, in thin layers), which the raw features describe and their residuals do not.

The coefficients are fitted by ridge regression on standardised predictors over the measured
spots only; the penalty is chosen by generalised cross-validation (GCV, closed form from one SVD),
shared by all genes (``penalty="shared"``: the mean over genes of their variance-scaled GCV
scores; a per-gene choice from ~50-150 spots is noisy), with "no histology" (``beta = 0``) among
the candidates, so a slide whose image does not explain the residual falls back to plain
``gaussian``. Hidden values are never part of the task.

``he_gaussian-permuted`` is the control: the same pipeline with the feature rows shuffled between
positions (seeded), which keeps the features' distribution and destroys their link with the tissue
under each spot. It should do no better than ``gaussian``.

``s2s-he`` brings the same histology term to S2S-ST (see :class:`S2SHe`); it imports the engine
(torch) only when it runs.
"""

from __future__ import annotations

import threading

import numpy as np

from ..data.histology_features import covariate_function, histology_features
from .base import ImputationTask, register
from .baselines import (
    _augment_with_targets,
    choose_bandwidth_loo,
    choose_pca_gaussian,
    gaussian_weights,
    pca_denoise,
)

#: Ridge penalties tried by GCV, as multiples of the mean squared singular value of the features.
RIDGE_GRID: tuple[float, ...] = tuple(float(a) for a in np.geomspace(1e-3, 1e3, 25))


def ridge_gcv(
    x: np.ndarray, y: np.ndarray, grid: tuple[float, ...] = RIDGE_GRID, shared: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge regression of each column of ``y`` on ``x``, penalty per column by GCV.

    ``x`` and ``y`` are centred here (an intercept is fitted and returned). The candidates are
    ``grid`` times the mean squared singular value of centred ``x``, plus an infinite penalty
    (``beta = 0``: intercept only).

    Parameters
    ----------
    x
        (m, F) predictors (standardise them first: one penalty for all columns).
    y
        (m, G) responses.
    grid
        Relative penalties.

    Returns
    -------
    (beta, intercept, penalty)
        (F, G) coefficients, (G,) intercepts and (G,) chosen penalties (``inf`` for "no model").
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    m, n_feat = x.shape
    xm = x.mean(axis=0)
    ym = y.mean(axis=0)
    xc = x - xm
    yc = y - ym
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    keep = s > s.max() * 1e-10 if s.size else np.zeros(0, bool)
    u, s, vt = u[:, keep], s[keep], vt[keep]
    uty = u.T @ yc  # (k, G)
    tss = (yc * yc).sum(axis=0)
    outside = tss - (uty * uty).sum(axis=0)  # part of y outside the span of x
    scale = float((s * s).mean()) if s.size else 1.0
    lams = np.asarray(grid, dtype=np.float64) * scale
    norm = np.where(tss > 0, 1.0 / np.where(tss > 0, tss, 1.0), 0.0)
    scores = [m * tss / max(m - 1.0, 1e-9) ** 2]  # beta = 0: df = 1 (intercept)
    cands = [np.inf]
    for lam in lams:
        shrink = (s * s) / (s * s + lam)
        rss = outside + (((1.0 - shrink)[:, None] * uty) ** 2).sum(axis=0)
        df = 1.0 + shrink.sum()
        if df >= m - 1:
            continue
        scores.append(m * rss / (m - df) ** 2)
        cands.append(lam)
    scores = np.asarray(scores)
    cands = np.asarray(cands)
    if shared:
        # one penalty for all genes: the mean GCV score, each gene scaled by its total variance
        best_lam = np.full(y.shape[1], cands[int(np.argmin((scores * norm[None, :]).mean(axis=1)))])
    else:
        best_lam = cands[np.argmin(scores, axis=0)]
    beta = np.zeros((n_feat, y.shape[1]))
    fitted = np.isfinite(best_lam)
    for lam in np.unique(best_lam[fitted]):
        cols = np.flatnonzero(best_lam == lam)
        beta[:, cols] = vt.T @ ((s / (s * s + lam))[:, None] * uty[:, cols])
    intercept = ym - xm @ beta
    return beta, intercept, best_lam


class HeGaussian:
    """Gaussian smoother plus a ridge model of its residual on per-spot H&E features.

    Parameters
    ----------
    features
        Histology feature set (see :func:`~napari_s2s.core.data.histology_features.histology_features`).
    permute
        Shuffle the feature rows between positions (the control); seeded by the task's seed.
    bandwidth
        Fix the smoother's bandwidth (pitch units) instead of choosing it by leave-one-out.
    design
        Predictors of the residual: ``"both"`` (histology residuals and the raw features),
        ``"residual"`` (histology residuals only) or ``"raw"`` (raw features only).
    penalty
        ``"shared"``: one ridge penalty for all genes (GCV averaged over genes, each scaled by its
        variance); ``"per_gene"``: each gene its own.
    smoother
        ``"gaussian"`` (the default) or ``"pca_gaussian"``: the measured spots are first denoised
        as by the ``pca_gaussian`` baseline (components and bandwidth by its cross-validation on
        measured spots) and the histology term models the residual of that smoother instead.

    Attributes
    ----------
    details_
        After :meth:`predict`: the bandwidth, the chosen penalties (``None`` = no histology term)
        and the number of features used.
    """

    name = "he_gaussian"

    def __init__(
        self,
        features: str = "basic",
        permute: bool = False,
        bandwidth: float | None = None,
        design: str = "both",
        penalty: str = "shared",
        smoother: str = "gaussian",
    ) -> None:
        if smoother not in ("gaussian", "pca_gaussian"):
            raise ValueError(f"smoother must be 'gaussian' or 'pca_gaussian', not {smoother!r}")
        self.smoother = smoother
        if design not in ("both", "residual", "raw"):
            raise ValueError(f"design must be 'both', 'residual' or 'raw', not {design!r}")
        if penalty not in ("shared", "per_gene"):
            raise ValueError(f"penalty must be 'shared' or 'per_gene', not {penalty!r}")
        self.features = features
        self.permute = permute
        self.bandwidth = bandwidth
        self.design = design
        self.penalty = penalty
        self.details_: dict = {}

    def __call__(self, task: ImputationTask) -> np.ndarray:
        return self.predict(task)

    def task_features(self, task: ImputationTask) -> tuple[np.ndarray, np.ndarray]:
        """(m, F) features of the measured spots and (t, F) of the targets (permuted for the control).

        The control permutes the rows of the stacked (measured + target) matrix with the task's
        seed, so a spot gets the features of a random other position of the slide.
        """
        if task.histology is None:
            raise ValueError(f"{self.name} needs an H&E image and pixel positions")
        rows = np.concatenate([task.measured_rows, task.target_rows])
        cols = np.concatenate([task.measured_cols, task.target_cols])
        feats = histology_features(task.histology, rows, cols, task.kind, features=self.features)
        feats = feats.astype(np.float64)
        if self.permute:
            rng = np.random.default_rng(task.seed)
            feats = feats[rng.permutation(feats.shape[0])]
        m = len(task.measured_rows)
        return feats[:m], feats[m:]

    def predict(self, task: ImputationTask) -> np.ndarray:
        base, _, term_dst = self.fit_terms(task)
        return np.maximum(base + term_dst, 0.0)  # log-normalised expression is never negative

    def fit_terms(self, task: ImputationTask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fit on the measured spots; the smoother's prediction and the histology term.

        Returns
        -------
        base
            (t, G) the smoother at the targets (exactly the ``gaussian`` / ``pca_gaussian`` baseline).
        term_measured
            (m, G) the fitted histology term at the measured spots (from their leave-one-out
            residual features).
        term_targets
            (t, G) the histology term at the targets; ``predict`` returns ``base + term_targets``
            clipped at 0.
        """
        src = task.measured_physical()
        dst = task.target_physical()
        vals = np.asarray(task.measured_values, dtype=np.float64)
        smooth = vals
        if self.smoother == "pca_gaussian":
            # the same steps as the pca_gaussian baseline's predict (baselines.PcaGaussian)
            x_all, tcols = _augment_with_targets(task)
            k, standardised, h, _ = choose_pca_gaussian(src, x_all, tcols, seed=task.seed)
            if k is not None:
                smooth = pca_denoise(x_all, tcols, k, standardised)
        else:
            h = self.bandwidth if self.bandwidth is not None else choose_bandwidth_loo(src, vals)
        w_dst = gaussian_weights(src, dst, h)
        base = w_dst @ smooth  # exactly the gaussian (or pca_gaussian) baseline
        none = (base, np.zeros_like(vals), np.zeros_like(base))
        self.details_ = {"bandwidth": float(h), "penalty": None, "n_features": 0}
        if len(src) < 8:
            return none
        w_loo = gaussian_weights(src, src, h, exclude_self=True)
        f_meas, f_dst = self.task_features(task)
        parts_meas, parts_dst = [], []
        if self.design in ("both", "residual"):
            parts_meas.append(f_meas - w_loo @ f_meas)  # histology residuals under the same smoother
            parts_dst.append(f_dst - w_dst @ f_meas)
        if self.design in ("both", "raw"):
            parts_meas.append(f_meas)
            parts_dst.append(f_dst)
        x_meas, x_dst = np.hstack(parts_meas), np.hstack(parts_dst)
        mu = x_meas.mean(axis=0)
        sd = x_meas.std(axis=0)
        ok = sd > 1e-9 * (1.0 + np.abs(mu))
        if not ok.any():
            return none
        z_meas = (x_meas[:, ok] - mu[ok]) / sd[ok]
        z_dst = (x_dst[:, ok] - mu[ok]) / sd[ok]
        resid = vals - w_loo @ smooth  # leave-one-out residual of the smoother at measured spots
        beta, _, lam = ridge_gcv(z_meas, resid, shared=self.penalty == "shared")
        self.details_ = {
            "bandwidth": float(h),
            "penalty": [None if not np.isfinite(v) else float(v) for v in lam],
            "n_features": int(ok.sum()),
        }
        # z is centred on the measured spots and the intercept (mean LOO residual) is left out, so
        # with beta = 0 the prediction is exactly the gaussian baseline's
        return base, z_meas @ beta, z_dst @ beta


def histology_terms(
    kind: str,
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    target_rows: np.ndarray,
    target_cols: np.ndarray,
    view,
    *,
    target_scale: float = 2.0,
    features: str = "basic",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """The histology term of ``he_gaussian`` for a whole slide (what ``impute --histology`` needs).

    Fits :meth:`HeGaussian.fit_terms` with every spot in ``rows, cols`` as measured and returns the
    term at those spots and at the targets. The S2S engine can then impute ``values - term_measured``
    and add ``term_targets`` back (as :class:`S2SHe` in ``"residual"`` mode does), restoring the
    measured values exactly at measured positions afterwards.

    Parameters
    ----------
    kind
        Lattice kind.
    rows, cols
        (m,) array coordinates of the measured spots.
    values
        (m, G) their log-normalised values.
    target_rows, target_cols
        (t,) target positions in array coordinates times ``target_scale`` (default: the dense x2
        grid, measured spots at ``(2 row, 2 col)``).
    view
        The slide's :class:`~napari_s2s.core.methods.HistologyView`.
    target_scale
        Scale of the target coordinates.
    features
        Histology feature set.
    seed
        Seed (only used by the permuted control; kept for symmetry).

    Returns
    -------
    (term_measured, term_targets, details)
        (m, G) and (t, G) float64, and the fit's details (bandwidth, penalty, number of features).
    """
    task = ImputationTask(
        kind=kind,
        measured_rows=np.asarray(rows),
        measured_cols=np.asarray(cols),
        measured_values=np.asarray(values, dtype=np.float32),
        genes=tuple(f"g{i}" for i in range(np.asarray(values).shape[1])),
        target_rows=np.asarray(target_rows, dtype=np.float64) / target_scale,
        target_cols=np.asarray(target_cols, dtype=np.float64) / target_scale,
        histology=view,
        seed=seed,
    )
    he = HeGaussian(features=features)
    _, term_meas, term_dst = he.fit_terms(task)
    return term_meas, term_dst, dict(he.details_)


@register("he_gaussian")
def he_gaussian(**options) -> HeGaussian:
    """``gaussian`` + ridge model of its residual on H&E features (needs an image)."""
    return HeGaussian(**options)


@register("he_gaussian-permuted")
def he_gaussian_permuted(**options) -> HeGaussian:
    """Control for ``he_gaussian``: the same with features shuffled between positions."""
    method = HeGaussian(permute=True, **options)
    method.name = "he_gaussian-permuted"
    return method


he_gaussian.needs_histology = True
he_gaussian_permuted.needs_histology = True
he_gaussian_permuted.ablation = True  # a control: run it by name (as the ablations of s2s)


class S2SHe:
    """S2S-ST guided by the H&E image (``s2s-he``), with the same engine and settings as ``s2s``.

    Two ways to bring the image in (``mode``):

    * ``"residual"`` (default): the histology term of ``he_gaussian`` (ridge on H&E features of the
      smoother's leave-one-out residual, fitted on the measured spots) is taken out of the measured
      values, S2S-ST imputes what is left, and the term is added back at the targets:
      ``S2S(y - H)(t) + H(t)``. With no histology signal (``H = 0``) this is exactly ``s2s``.
    * ``"channels"``: ``n_components`` channels of H&E features
      (:func:`~napari_s2s.core.data.histology_features.covariate_function`: standardised and reduced by PCA on the
      measured spots) at every grid position are extra network inputs, for training on the
      measured spots and for predicting the targets.

    Parameters
    ----------
    mode
        ``"residual"`` or ``"channels"``.
    preset
        ``"fast"`` or ``"paper"``.
    n_components
        H&E channels (principal components of the standardised features).
    features
        Histology feature set.
    **overrides
        Any :class:`~napari_s2s.core.s2s.engine.S2SConfig` field.
    """

    name = "s2s-he"

    def __init__(
        self,
        mode: str = "residual",
        preset: str = "fast",
        n_components: int = 4,
        features: str = "basic",
        **overrides,
    ) -> None:
        if mode not in ("residual", "channels"):
            raise ValueError(f"mode must be 'residual' or 'channels', not {mode!r}")
        self.mode = mode
        self.preset = preset
        self.n_components = n_components
        self.features = features
        self.overrides = dict(overrides)
        self.details_: dict | None = None
        self.stop_requested = threading.Event()

    def stop(self) -> None:
        """End a running :meth:`predict` after the current training step (it raises ``MethodStopped``)."""
        self.stop_requested.set()

    def predict(self, task: ImputationTask) -> np.ndarray:
        # imported here: the engine (torch) is only needed when this method actually runs
        from ..s2s.engine import S2SImputer, cross_gene_matrix
        from .s2s import S2SMethod, to_lattice, train_until_stopped

        if task.histology is None:
            raise ValueError("s2s-he needs an H&E image and pixel positions")
        if self.mode == "residual":
            return self._predict_residual(task)
        lr, lc, tr, tc = to_lattice(task)
        # dense grid of the measured lattice = array coordinates minus the sub-lattice offset
        a = int(task.measured_rows[0] - 2 * lr[0])
        b = int(task.measured_cols[0] - 2 * lc[0])
        cov = covariate_function(
            task.histology, task.kind, task.measured_rows, task.measured_cols,
            scale=1.0, offset=(a, b), n_components=self.n_components, features=self.features,
        )
        cfg = S2SMethod(self.preset, **self.overrides).config_for(task)
        imp = S2SImputer(cfg)
        values = np.asarray(task.measured_values, np.float32)
        allg = cross_gene_matrix(task.measured_all_genes) if task.measured_all_genes is not None else None
        train_until_stopped(imp, self.stop_requested, lr, lc, task.kind, values, list(task.genes), all_genes=allg,
                            covariates=cov)
        pred, _ = imp.impute_arrays(lr, lc, task.kind, values, tr, tc, all_genes=allg, covariates=cov)
        self.details_ = dict(imp.stats, histology_channels=int(cov.n_channels))
        return pred.astype(np.float64)

    def _predict_residual(self, task: ImputationTask) -> np.ndarray:
        import dataclasses

        from .s2s import S2SMethod

        he = HeGaussian(features=self.features)
        _, term_meas, term_dst = he.fit_terms(task)
        rest = np.asarray(task.measured_values, dtype=np.float64) - term_meas
        # S2S predicts non-negative values (log-normalised expression): shift what is left so that
        # it stays >= 0, and shift back afterwards
        shift = np.maximum(0.0, -rest.min(axis=0))
        inner = S2SMethod(self.preset, **self.overrides)
        inner.stop_requested = self.stop_requested  # stop() reaches the inner training
        sub = dataclasses.replace(task, measured_values=(rest + shift).astype(np.float32))
        pred = inner.predict(sub) - shift + term_dst
        self.details_ = dict(inner.details_ or {}, histology=he.details_)
        return np.maximum(pred, 0.0)


@register("s2s-he")
def s2s_he(**options) -> S2SHe:
    """S2S-ST with H&E feature channels (needs an image; trains like ``s2s``)."""
    return S2SHe(**options)


s2s_he.needs_histology = True
