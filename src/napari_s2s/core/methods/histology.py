"""Histology-guided imputation: ``he_gaussian`` and its control ``he_gaussian-permuted``.

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

The S2S engine's base predictor has the same kind of H&E term (:class:`~napari_s2s.core.smoothing.ridge.FeatureTerm`,
on the kriging smoother's residual): ``s2s`` uses it when the slide has an image (``s2s-he`` requires one).
"""

from __future__ import annotations

import numpy as np

from ..data.histology_features import histology_features
from ..smoothing.ridge import RIDGE_GRID, FeatureTerm, ridge_gcv  # noqa: F401  (re-exported)
from .base import ImputationTask, register
from .baselines import (
    _augment_with_targets,
    choose_bandwidth_loo,
    choose_pca_gaussian,
    gaussian_weights,
    pca_denoise,
)


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
    clip
        Clip the term's predictors at targets to their range at the measured spots (the default;
        see :meth:`~napari_s2s.core.smoothing.ridge.FeatureTerm.fit`).

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
        clip: bool = True,
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
        self.clip = clip
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
        resid = vals - w_loo @ smooth  # leave-one-out residual of the smoother at measured spots
        fc = f_meas - f_meas.mean(axis=0)
        term = FeatureTerm.fit(f_meas, w_loo @ fc, resid, self.design, self.penalty, self.clip)
        if term is None:
            return none
        self.details_ = {"bandwidth": float(h), "penalty": term.penalties, "n_features": int(term.keep.sum())}
        # predictors are centred on the measured spots and the intercept (mean LOO residual) is left
        # out, so with beta = 0 the prediction is exactly the gaussian baseline's
        return base, term.at(f_meas, w_loo @ fc), term.at(f_dst, w_dst @ fc)


def _own(options: dict) -> dict:
    """The options :class:`HeGaussian` takes (a caller's general ones, e.g. a training budget, do not
    apply to a method that does not train)."""
    import inspect

    params = inspect.signature(HeGaussian).parameters
    return {k: v for k, v in options.items() if k in params}


@register("he_gaussian")
def he_gaussian(**options) -> HeGaussian:
    """``gaussian`` + ridge model of its residual on H&E features (needs an image)."""
    return HeGaussian(**_own(options))


@register("he_gaussian-permuted")
def he_gaussian_permuted(**options) -> HeGaussian:
    """Control for ``he_gaussian``: the same with features shuffled between positions."""
    method = HeGaussian(**{**_own(options), "permute": True})
    method.name = "he_gaussian-permuted"
    return method


he_gaussian.needs_histology = True
he_gaussian_permuted.needs_histology = True
he_gaussian_permuted.ablation = True  # a control: run it by name (as the ablations of s2s)
