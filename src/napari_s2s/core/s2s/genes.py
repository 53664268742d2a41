"""Which genes the networks train on: the user's genes, and optionally more chosen by spatial signal.

The networks treat genes as samples (one network for all genes, :mod:`.train`): every gene is
another picture of the same tissue. Genes whose measured values are mostly noise teach the networks
little; genes with strong spatial structure teach the tissue's shapes. Two levers use this, both
measured on the measured spots only:

* **auxiliary genes**: genes of the slide that are not the user's, with the strongest spatial signal,
  added to the training set (never predicted, never weighed in the blend);
* **signal-weighted sampling**: each training batch draws gene ``g`` with probability proportional
  to its spatial signal (floored), instead of uniformly.

Spatial signal of a gene: the correlation, over the measured spots, of each spot's value with the
mean of its nearest measured neighbours (a lattice autocorrelation, like Moran's I, without the
spot itself: pure noise scores ~0).
"""

from __future__ import annotations

import numpy as np

#: Auxiliary genes trained on by default (``S2SConfig.aux_genes``): none. With 30 user genes, 30 of
#: them added 0.006 median PCC on the shared slides; with 8 they lowered it on every small slide tried
#: (``benchmarks/results/aux_genes.md``).
AUX_GENES = 0
#: Neighbours averaged per spot (the first ring of a hexagonal lattice; a square lattice's 4 + 2).
NEIGHBOURS = 6
#: Values (spots x genes) converted to float64 at a time.
GENE_BLOCK_VALUES = 8_000_000
#: Sampling weight floor, as a fraction of the largest signal (no gene is never drawn).
SIGNAL_FLOOR = 0.1


def spatial_signal(phys: np.ndarray, values, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """(n,) per-gene correlation of each spot's value with its neighbours' mean, over the spots.

    Parameters
    ----------
    phys
        (m, 2) positions of the measured spots.
    values
        (m, n) their values (dense or scipy sparse).
    neighbours
        Nearest measured spots averaged per spot (fewer when there are fewer spots).

    Returns
    -------
    (n,) float64 in ``[-1, 1]``; 0 for genes constant over the spots.
    """
    import scipy.sparse as sp
    from scipy.spatial import cKDTree

    phys = np.asarray(phys, dtype=np.float64)
    m = len(phys)
    k = min(int(neighbours), m - 1)
    if m < 3 or k < 1:
        return np.zeros(values.shape[1])
    _, nn = cKDTree(phys).query(phys, k=k + 1)
    nn = nn[:, 1:]  # drop the spot itself
    w = sp.csr_matrix((np.full(m * k, 1.0 / k), (np.repeat(np.arange(m), k), nn.ravel())), shape=(m, m))
    n = values.shape[1]
    out = np.zeros(n)
    step = max(1, GENE_BLOCK_VALUES // max(m, 1))  # a real-size slide: a block of genes at a time
    for a in range(0, n, step):
        block = values[:, a : a + step]
        x = np.asarray(block.toarray() if sp.issparse(block) else block, dtype=np.float64)
        s = np.asarray(w @ x)
        xc, sc = x - x.mean(0), s - s.mean(0)
        den = np.sqrt((xc * xc).sum(0) * (sc * sc).sum(0))
        out[a : a + step] = np.where(den > 1e-12, (xc * sc).sum(0) / np.where(den > 1e-12, den, 1.0), 0.0)
    return out


def auxiliary_genes(signal: np.ndarray, exclude: np.ndarray, n: int) -> np.ndarray:
    """Columns of the ``n`` genes with the highest ``signal`` (> 0) outside ``exclude``, strongest first."""
    order = np.argsort(-np.asarray(signal), kind="stable")
    ex = set(int(c) for c in np.asarray(exclude).ravel())
    picked = [int(c) for c in order if int(c) not in ex and signal[c] > 0]
    return np.asarray(picked[: max(0, int(n))], dtype=np.int64)


def sampling_weights(signal: np.ndarray, floor: float = SIGNAL_FLOOR) -> np.ndarray:
    """Per-gene probabilities proportional to the signal, floored at ``floor`` times its maximum."""
    s = np.clip(np.asarray(signal, dtype=np.float64), 0.0, None)
    top = float(s.max()) if s.size else 0.0
    if top <= 0:
        return np.full(len(s), 1.0 / max(len(s), 1))
    s = np.maximum(s, floor * top)
    return s / s.sum()
