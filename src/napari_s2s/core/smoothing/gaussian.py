"""Gaussian-weighted means of measured spots (Nadaraya-Watson smoothing) and their leave-one-out bandwidth.

Distances are physical, in pitch units of the slide's lattice (see :func:`napari_s2s.core.data.lattice.physical`).
"""

from __future__ import annotations

import numpy as np

#: Candidate Gaussian bandwidths (standard deviation, in pitch units of the full lattice). The
#: measured lattice of the benchmark has a spacing of 2 pitch; tiny bandwidths degrade gracefully to
#: nearest-neighbour prediction, large ones to the global mean.
BANDWIDTHS: tuple[float, ...] = tuple(float(b) for b in np.round(np.geomspace(0.5, 12.0, 19), 4))

#: Largest weight matrix (elements) :func:`gaussian_smooth` builds at once.
_BLOCK_ELEMENTS = 4_000_000


# ---------------------------------------------------------------------- distances and weights
def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) squared Euclidean distances, float64, never negative."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def gaussian_weights(
    src_phys: np.ndarray, dst_phys: np.ndarray, bandwidth: float, exclude_self: bool = False
) -> np.ndarray:
    """Row-normalised Gaussian weights from sources to destinations.

    Weights are ``exp(-d^2 / (2 h^2))`` normalised per destination. They are computed relative to the
    nearest source of each destination (``d^2 - min d^2``), so a destination far from every source
    gets its nearest sources' mean instead of 0/0.

    Parameters
    ----------
    src_phys
        (m, 2) physical positions of the sources (pitch units).
    dst_phys
        (t, 2) physical positions of the destinations.
    bandwidth
        Gaussian standard deviation ``h`` in pitch units (> 0).
    exclude_self
        Give zero weight to pairs at distance 0 (leave-one-out when ``dst_phys is src_phys``).

    Returns
    -------
    numpy.ndarray
        (t, m) float64 weights, rows summing to 1.
    """
    if bandwidth <= 0:
        raise ValueError("bandwidth must be positive")
    d2 = _sq_dists(dst_phys, src_phys)
    if exclude_self:
        d2 = np.where(d2 < 1e-12, np.inf, d2)
    d2 = d2 - d2.min(axis=1, keepdims=True)
    w = np.exp(-d2 / (2.0 * bandwidth * bandwidth))
    return w / w.sum(axis=1, keepdims=True)


def gaussian_smooth(
    src_phys: np.ndarray, src_values: np.ndarray, dst_phys: np.ndarray, bandwidth: float | np.ndarray
) -> np.ndarray:
    """Gaussian-weighted mean of source values at destination points.

    Parameters
    ----------
    src_phys
        (m, 2) physical positions of the sources (pitch units).
    src_values
        (m, G) or (m,) values at the sources.
    dst_phys
        (t, 2) physical positions of the destinations.
    bandwidth
        One bandwidth for all columns, or a (G,) array with one per column.

    Returns
    -------
    numpy.ndarray
        (t, G) (or (t,)) float64 predictions.
    """
    vals = np.asarray(src_values, dtype=np.float64)
    one_d = vals.ndim == 1
    if one_d:
        vals = vals[:, None]
    bw = np.asarray(bandwidth, dtype=np.float64)
    if bw.ndim == 0:
        bw = np.full(vals.shape[1], float(bw))
    if bw.shape != (vals.shape[1],):
        raise ValueError("one bandwidth per column expected")
    dst = np.asarray(dst_phys, dtype=np.float64)
    out = np.empty((len(dst), vals.shape[1]))
    # destinations in blocks, so that a dense output grid never needs a huge weight matrix
    step = max(1, _BLOCK_ELEMENTS // max(1, len(src_phys)))
    for h in np.unique(bw):
        cols = np.flatnonzero(bw == h)
        for s in range(0, len(dst), step):
            out[s : s + step, cols] = gaussian_weights(src_phys, dst[s : s + step], float(h)) @ vals[:, cols]
    return out[:, 0] if one_d else out


def loo_errors(phys: np.ndarray, values: np.ndarray, bandwidths: tuple[float, ...] = BANDWIDTHS) -> np.ndarray:
    """Leave-one-out squared errors of Gaussian smoothing, per bandwidth and gene.

    Each spot is predicted from all the others (its own weight is zero).

    Parameters
    ----------
    phys
        (m, 2) physical positions of the measured spots.
    values
        (m, G) measured values.
    bandwidths
        Candidate bandwidths (pitch units).

    Returns
    -------
    numpy.ndarray
        (len(bandwidths), G) mean squared LOO error of each gene under each bandwidth.
    """
    vals = np.asarray(values, dtype=np.float64)
    if vals.ndim == 1:
        vals = vals[:, None]
    out = np.empty((len(bandwidths), vals.shape[1]))
    for i, h in enumerate(bandwidths):
        pred = gaussian_weights(phys, phys, h, exclude_self=True) @ vals
        out[i] = ((pred - vals) ** 2).mean(axis=0)
    return out


def gene_weights(values: np.ndarray) -> np.ndarray:
    """1 / variance per gene (constant genes get 0), so each gene weighs the same in a criterion."""
    var = np.asarray(values, dtype=np.float64).var(axis=0)
    return np.where(var > 0, 1.0 / np.where(var > 0, var, 1.0), 0.0)


def choose_bandwidth_loo(
    phys: np.ndarray,
    values: np.ndarray,
    bandwidths: tuple[float, ...] = BANDWIDTHS,
    per_gene: bool = False,
) -> float | np.ndarray:
    """Choose the Gaussian bandwidth by leave-one-out on the measured spots only.

    Parameters
    ----------
    phys
        (m, 2) physical positions of the measured spots (pitch units).
    values
        (m, G) measured values.
    bandwidths
        Candidates (pitch units).
    per_gene
        Return one bandwidth per gene (each gene's LOO minimum) instead of one shared bandwidth
        minimising the mean over genes of the variance-normalised LOO error.

    Returns
    -------
    float or numpy.ndarray
        The bandwidth, or a (G,) array of them with ``per_gene``. Ties go to the smaller bandwidth.
    """
    vals = np.asarray(values, dtype=np.float64)
    if vals.ndim == 1:
        vals = vals[:, None]
    if len(phys) < 2:
        return float(bandwidths[0]) if not per_gene else np.full(vals.shape[1], bandwidths[0])
    err = loo_errors(phys, vals, bandwidths)
    bws = np.asarray(bandwidths, dtype=np.float64)
    if per_gene:
        return bws[np.argmin(err, axis=0)]
    score = (err * gene_weights(vals)[None, :]).mean(axis=1)
    return float(bws[int(np.argmin(score))])
