"""Classical imputation baselines: ``nearest``, ``linear``, ``cubic``, ``gaussian``, ``kriging``, ``pca_gaussian``.

All of them work in physical proportions (pitch units, :meth:`ImputationTask.measured_physical`),
see only the measured spots of the task and predict every target position.

Reusable building blocks (other methods, e.g. the histology-guided ``he_gaussian``, build on them):

* :func:`gaussian_weights` / :func:`gaussian_smooth`: Gaussian-weighted mean of source values at
  destination points, numerically safe far from every source.
* :func:`loo_errors` / :func:`choose_bandwidth_loo`: the leave-one-out choice of the bandwidth on the
  measured spots only.
* :func:`pca_denoise`: projection of the measured spots on their top principal components.

Choices (and why)
-----------------
``gaussian`` uses **one bandwidth for all genes**, chosen by leave-one-out over
:data:`BANDWIDTHS` on the measured spots (the error is the mean over genes of the LOO mean squared
error divided by that gene's variance, so every gene weighs the same). A per-gene bandwidth is
available (``per_gene=True``) but is chosen from as few as ~50 spots per gene on legacy ST slides,
where its LOO minimum is noisy; the shared one is the default.

``pca_gaussian`` chooses jointly the number of components ``k`` (including "no denoising"), whether
genes are standardised before the PCA, and the bandwidth by K-fold cross-validation over the
measured spots: for each fold the PCA (centre, scales and loadings) is fitted on the other folds
only, those spots are denoised and smoothed onto the fold's spots, and the error is measured
against the fold's raw values. The held-out spots never influence
the components they are scored with, so the criterion is honest; it uses measured data only.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CloughTocher2DInterpolator, LinearNDInterpolator
from scipy.spatial import Delaunay, cKDTree

from ..smoothing.gaussian import (  # noqa: F401  (re-exported: the building blocks of these baselines)
    BANDWIDTHS,
    choose_bandwidth_loo,
    gaussian_smooth,
    gaussian_weights,
    gene_weights,
    loo_errors,
)
from ..smoothing.pca import dense, pca_basis, pca_denoise, reconstruct, top_loadings  # noqa: F401
from .base import ImputationTask, register

#: Candidate numbers of principal components for ``pca_gaussian``.
PCA_COMPONENTS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)

# old private names, kept for scripts that used them
_dense, _pca_basis, _top_loadings, _reconstruct, _gene_weights = (
    dense,
    pca_basis,
    top_loadings,
    reconstruct,
    gene_weights,
)


def _augment_with_targets(task: ImputationTask) -> tuple[np.ndarray, np.ndarray]:
    """The all-gene matrix including the target genes, and the column of each target gene.

    Target genes found in ``task.extra["all_genes"]`` (the names of ``measured_all_genes``'
    columns, set by the benchmark) use their column; others (or all, when the names are unknown)
    are appended, so that every target gene is part of the decomposition exactly once.
    """
    vals = np.asarray(task.measured_values, dtype=np.float64)
    if task.measured_all_genes is None or task.measured_all_genes.shape[1] == 0:
        return vals, np.arange(vals.shape[1])
    x = dense(task.measured_all_genes)
    names = task.extra.get("all_genes") if isinstance(task.extra, dict) else None
    lookup = {str(n): i for i, n in enumerate(names)} if names is not None and len(names) == x.shape[1] else {}
    cols = np.empty(len(task.genes), dtype=np.int64)
    extra = []
    for g, name in enumerate(task.genes):
        j = lookup.get(name)
        if j is not None and np.allclose(x[:, j], vals[:, g], atol=1e-6):
            cols[g] = j
        else:
            cols[g] = x.shape[1] + len(extra)
            extra.append(vals[:, g])
    if extra:
        x = np.concatenate([x, np.stack(extra, axis=1)], axis=1)
    return x, cols


def choose_pca_gaussian(
    phys: np.ndarray,
    all_genes: np.ndarray,
    target_cols: np.ndarray,
    n_folds: int = 5,
    seed: int = 0,
    components: tuple[int, ...] = PCA_COMPONENTS,
    bandwidths: tuple[float, ...] = BANDWIDTHS,
    standardise: tuple[bool, ...] = (False, True),
) -> tuple[int | None, bool, float, dict]:
    """Choose the denoising and the bandwidth of ``pca_gaussian`` by K-fold CV on measured spots.

    Candidates: no denoising (plain ``gaussian``), or ``k`` components of a centred
    (``standardise=False``) or standardised (``True``) PCA, each with every bandwidth. For each fold
    the PCA (means, scales, loadings) is fitted on the other folds' spots, which are denoised and
    smoothed onto the fold's spots; the error is the squared error against the fold's raw values of
    the target columns (predictions clipped at 0, as in :class:`PcaGaussian`), divided by each
    gene's variance, averaged over genes and spots. The folds are a seeded random partition of the
    measured spots.

    Returns
    -------
    (k, standardised, bandwidth, info)
        ``k`` is ``None`` when no denoising wins; ``info`` holds the candidates and error table.
    """
    m = len(phys)
    rng = np.random.default_rng(seed)
    folds = rng.permutation(m) % max(2, min(n_folds, m))
    x = dense(all_genes)
    tvals = x[:, target_cols]
    gw = gene_weights(tvals)
    k_cap = min(x.shape[1], m - int(np.bincount(folds).max()) - 1)
    ks = [k for k in components if k <= k_cap]
    cands: list[tuple[int | None, bool]] = [(None, False)] + [(k, st) for st in standardise for k in ks]
    err = np.zeros((len(cands), len(bandwidths)))
    for f in np.unique(folds):
        te = folds == f
        tr = ~te
        weights = [gaussian_weights(phys[tr], phys[te], h) for h in bandwidths]
        # smoothing is linear: smooth the PCA scores once per bandwidth, then any rank is cheap
        parts = {}
        for st in standardise if ks else ():
            mean, scale, vt = pca_basis(x[tr], max(ks), st)
            scores = ((x[tr] - mean) / scale) @ vt.T
            load = vt[:, target_cols] * scale[target_cols]
            parts[st] = (mean[target_cols], load, [w @ scores for w in weights])
        for i, (k, st) in enumerate(cands):
            for j, w in enumerate(weights):
                if k is None:
                    pred = w @ tvals[tr]
                else:
                    mean_t, load, smoothed = parts[st]
                    pred = smoothed[j][:, :k] @ load[:k] + mean_t
                e = (np.maximum(pred, 0.0) - tvals[te]) ** 2
                err[i, j] += float((e * gw[None, :]).sum())
    err /= m * max(1, tvals.shape[1])
    i, j = np.unravel_index(int(np.argmin(err)), err.shape)
    k, st = cands[i]
    return k, st, float(bandwidths[j]), {"candidates": cands, "bandwidths": list(bandwidths), "cv_error": err}


# ---------------------------------------------------------------------- the methods
class _Base:
    name = "base"

    def __call__(self, task: ImputationTask) -> np.ndarray:  # convenience
        return self.predict(task)


def _nearest(task: ImputationTask, vals: np.ndarray | None = None) -> np.ndarray:
    src = task.measured_physical()
    vals = np.asarray(task.measured_values if vals is None else vals, dtype=np.float64)
    _, idx = cKDTree(src).query(task.target_physical(), k=1)
    return vals[np.asarray(idx, dtype=np.int64)]


@register("nearest")
class Nearest(_Base):
    """Value of the nearest measured spot (physical distance)."""

    name = "nearest"

    def predict(self, task: ImputationTask) -> np.ndarray:
        return _nearest(task)


def barycentric_transforms(tri: Delaunay) -> np.ndarray:
    """The (nsimplex, 3, 2) affine transforms to barycentric coordinates of a 2-D triangulation.

    The same array as :attr:`scipy.spatial.Delaunay.transform` (``T^-1`` in ``[:, :2, :]``, the
    last vertex in ``[:, 2, :]``, NaN for degenerate triangles), computed in closed form with
    numpy. SciPy computes it with one LAPACK call per triangle, which takes seconds instead of
    milliseconds when a multi-threaded BLAS shares busy cores.
    """
    pts = tri.points[tri.simplices]  # (n, 3, 2)
    r = pts[:, 2, :]
    a = pts[:, 0, 0] - r[:, 0]
    b = pts[:, 1, 0] - r[:, 0]
    c = pts[:, 0, 1] - r[:, 1]
    d = pts[:, 1, 1] - r[:, 1]
    det = a * d - b * c
    scale = np.maximum(np.abs(a * d) + np.abs(b * c), np.finfo(float).tiny)
    ok = np.abs(det) > 1e3 * np.finfo(float).eps * scale
    det = np.where(ok, det, np.nan)
    out = np.empty((len(pts), 3, 2))
    out[:, 0, 0] = d / det
    out[:, 0, 1] = -b / det
    out[:, 1, 0] = -c / det
    out[:, 1, 1] = a / det
    out[:, 2, :] = r
    return out


def delaunay(points: np.ndarray) -> Delaunay:
    """``scipy.spatial.Delaunay`` of 2-D points with its barycentric transforms precomputed
    (:func:`barycentric_transforms`; SciPy computes them lazily when none are set)."""
    tri = Delaunay(points)
    if getattr(tri, "_transform", "absent") is None:
        tri._transform = barycentric_transforms(tri)
    return tri


class _Griddata(_Base):
    """``scipy.interpolate.griddata`` (``linear``: LinearNDInterpolator, ``cubic``:
    CloughTocher2DInterpolator, the same interpolators ``griddata`` builds) on a triangulation
    from :func:`delaunay`; nearest outside the convex hull."""

    method = "linear"

    def predict(self, task: ImputationTask) -> np.ndarray:
        src = task.measured_physical()
        dst = task.target_physical()
        vals = np.asarray(task.measured_values, dtype=np.float64)
        near = _nearest(task)
        if len(src) < 4 or len(dst) == 0:
            return near
        try:
            tri = delaunay(src)
        except Exception:  # degenerate (collinear) sources: Qhull cannot triangulate
            return near
        interp = LinearNDInterpolator if self.method == "linear" else CloughTocher2DInterpolator
        out = np.asarray(interp(tri, vals)(dst), dtype=np.float64).reshape(len(dst), vals.shape[1])
        bad = ~np.isfinite(out)
        out[bad] = near[bad]
        return out


@register("linear")
class Linear(_Griddata):
    """Piecewise-linear interpolation on the Delaunay triangulation (as ``scipy.interpolate.griddata``);
    nearest outside the convex hull of the measured spots."""

    name = "linear"
    method = "linear"


@register("cubic")
class Cubic(_Griddata):
    """Clough-Tocher cubic interpolation (as ``scipy.interpolate.griddata``); nearest outside the hull."""

    name = "cubic"
    method = "cubic"


@register("gaussian")
class Gaussian(_Base):
    """Gaussian-weighted mean of the measured spots; bandwidth by leave-one-out on them.

    Parameters
    ----------
    per_gene
        One bandwidth per gene instead of one shared bandwidth (see the module notes).
    bandwidth
        Fix the bandwidth (pitch units) instead of choosing it.
    """

    name = "gaussian"

    def __init__(self, per_gene: bool = False, bandwidth: float | None = None) -> None:
        self.per_gene = per_gene
        self.bandwidth = bandwidth
        self.details_: dict = {}

    def predict(self, task: ImputationTask) -> np.ndarray:
        src = task.measured_physical()
        vals = np.asarray(task.measured_values, dtype=np.float64)
        h = self.bandwidth
        if h is None:
            h = choose_bandwidth_loo(src, vals, per_gene=self.per_gene)
        self.details_ = {"bandwidth": h, "per_gene": self.per_gene}
        return gaussian_smooth(src, vals, task.target_physical(), h)


@register("kriging")
class KrigingMethod(_Base):
    """Kriging (Gaussian-process regression with a nugget) of the measured spots.

    One exponential-kernel field per gene with a length and a signal-to-noise ratio shared by the
    (standardised) genes, both chosen by leave-one-out on the measured spots
    (:class:`~napari_s2s.core.smoothing.kriging.Kriging`). Unlike the Gaussian-weighted mean, a
    target one pitch from a measured spot is predicted knowing it is closer than the spots used to
    choose the parameters are to each other.
    """

    name = "kriging"

    def __init__(self) -> None:
        self.details_: dict = {}

    def predict(self, task: ImputationTask) -> np.ndarray:
        from ..smoothing.kriging import Kriging

        src = task.measured_physical()
        vals = np.asarray(task.measured_values, dtype=np.float64)
        kr = Kriging.fit(src, vals, seed=task.seed)
        self.details_ = {"nu": kr.nu, "ell": kr.ell, "snr": kr.snr}
        return np.maximum(kr.predict(src, vals, task.target_physical()), 0.0)


@register("pca_gaussian")
class PcaGaussian(_Base):
    """Gaussian smoothing of the measured spots after denoising them by PCA over all detected genes.

    The denoising (none, or ``k`` components of a centred or a standardised PCA) and the bandwidth
    are chosen jointly by K-fold cross-validation over the measured spots
    (:func:`choose_pca_gaussian`); the final PCA is then fitted on all measured spots. The genes of
    the decomposition are every gene detected in >= 10 % of the measured spots
    (``task.measured_all_genes``) plus the target genes.

    Parameters
    ----------
    n_folds
        Folds of the cross-validation.
    """

    name = "pca_gaussian"

    def __init__(self, n_folds: int = 5) -> None:
        self.n_folds = n_folds
        self.details_: dict = {}

    def predict(self, task: ImputationTask) -> np.ndarray:
        src = task.measured_physical()
        x, tcols = _augment_with_targets(task)
        k, st, h, _ = choose_pca_gaussian(src, x, tcols, n_folds=self.n_folds, seed=task.seed)
        self.details_ = {
            "components": k,
            "standardised": st if k is not None else None,
            "bandwidth": h,
            "genes_in_pca": int(x.shape[1]),
        }
        den = np.asarray(task.measured_values, dtype=np.float64) if k is None else pca_denoise(x, tcols, k, st)
        return np.maximum(gaussian_smooth(src, den, task.target_physical(), h), 0.0)
