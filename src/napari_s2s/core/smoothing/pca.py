"""Denoising spots by projection on their top principal components over many genes."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: Above this many values (spots x genes, more spots than genes), :func:`pca_basis` and
#: :func:`reconstruct` work through blocks of spots, in float64 one block at a time: the matrix of a
#: real-size slide (150 k spots x 2000 genes) stays as it is (float32), without float64 copies.
BLOCK_ABOVE = 20_000_000
#: Spots per block of the blockwise route.
BLOCK_ROWS = 16_384


def dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


def as_matrix(x) -> np.ndarray:
    """Spots x genes values as an array for :func:`pca_basis`: float64, except above
    :data:`BLOCK_ABOVE` values, where a float32 matrix is kept as it is (no copy)."""
    if sp.issparse(x):
        x = x.toarray()
    x = np.asarray(x)
    if _blockwise(x) and x.dtype in (np.float32, np.float64):
        return x
    return np.asarray(x, dtype=np.float64)


def _blockwise(x: np.ndarray) -> bool:
    return x.ndim == 2 and x.size > BLOCK_ABOVE and x.shape[0] > x.shape[1]


def _blocks(m: int):
    for a in range(0, m, BLOCK_ROWS):
        yield slice(a, min(a + BLOCK_ROWS, m))


def pca_basis(x: np.ndarray, k_max: int, standardise: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column means, column scales and the top ``k_max`` loadings (k_max, genes) of ``x`` (spots x genes).

    With ``standardise`` the columns are divided by their standard deviation before the SVD (every
    gene weighs the same); otherwise the scales are 1 (centred PCA). Above :data:`BLOCK_ABOVE`
    values the genes' Gram matrix is accumulated over blocks of spots (memory: genes x genes).
    """
    if _blockwise(x):
        return _pca_basis_blocks(x, k_max, standardise)
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0) if standardise else np.ones(x.shape[1])
    scale = np.where(scale > 0, scale, 1.0)
    return mean, scale, top_loadings((x - mean) / scale, k_max)


def top_loadings(xc: np.ndarray, k: int) -> np.ndarray:
    """Top ``k`` right singular vectors (k', genes) of a centred matrix, k' <= k (numerical rank).

    Computed from the eigen-decomposition of the smaller Gram matrix (spots x spots or genes x
    genes): much cheaper than a full SVD for these very wide or very tall matrices, and it stays
    fast when a multi-threaded BLAS has to share busy cores.
    """
    m, n = xc.shape
    if k <= 0 or m == 0 or n == 0:
        return np.zeros((0, n))
    if m <= n:
        evals, u = np.linalg.eigh(xc @ xc.T)
        order = np.argsort(evals)[::-1][:k]
        evals, u = evals[order], u[:, order]
        keep = evals > max(float(evals[0]), 0.0) * 1e-10 if evals.size else evals > 0
        vt = (u[:, keep].T @ xc) / np.sqrt(evals[keep])[:, None]
    else:
        vt = _loadings_from_gram(xc.T @ xc, k)
    return vt


def _loadings_from_gram(gram: np.ndarray, k: int) -> np.ndarray:
    """Top ``k`` eigenvectors (k', genes) of the genes' Gram matrix, k' <= k (numerical rank)."""
    evals, v = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1][:k]
    evals, v = evals[order], v[:, order]
    keep = evals > max(float(evals[0]), 0.0) * 1e-10 if evals.size else evals > 0
    return v[:, keep].T


def _pca_basis_blocks(x: np.ndarray, k: int, standardise: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pca_basis` through blocks of spots (the same numbers up to rounding)."""
    m, n = x.shape
    mean = np.zeros(n)
    for b in _blocks(m):
        mean += np.asarray(x[b], dtype=np.float64).sum(axis=0)
    mean /= m
    if standardise:
        var = np.zeros(n)
        for b in _blocks(m):
            var += ((np.asarray(x[b], dtype=np.float64) - mean) ** 2).sum(axis=0)
        scale = np.sqrt(var / m)
    else:
        scale = np.ones(n)
    scale = np.where(scale > 0, scale, 1.0)
    if k <= 0 or m == 0 or n == 0:
        return mean, scale, np.zeros((0, n))
    gram = np.zeros((n, n))
    for b in _blocks(m):
        c = (np.asarray(x[b], dtype=np.float64) - mean) / scale
        gram += c.T @ c
    return mean, scale, _loadings_from_gram(gram, k)


def reconstruct(x, mean, scale, vt, k, cols) -> np.ndarray:
    """Rank-``k`` reconstruction of columns ``cols`` of ``x`` on the basis ``(mean, scale, vt)``
    (through blocks of spots above :data:`BLOCK_ABOVE` values: memory of the output only)."""
    if _blockwise(x):
        out = np.empty((x.shape[0], len(np.atleast_1d(cols))))
        for b in _blocks(x.shape[0]):
            out[b] = reconstruct(np.asarray(x[b], dtype=np.float64), mean, scale, vt, k, cols)
        return out
    scores = ((x - mean) / scale) @ vt[:k].T
    return (scores @ vt[:k][:, cols]) * scale[cols] + mean[cols]


def pca_denoise(all_genes: np.ndarray, target_cols: np.ndarray | None, k: int, standardise: bool = False) -> np.ndarray:
    """Project spots on their top ``k`` principal components and reconstruct.

    Parameters
    ----------
    all_genes
        (m, n) values of the spots over many genes (dense or sparse).
    target_cols
        Column indices to return (``None``: all).
    k
        Number of components.
    standardise
        Scale genes to unit variance before the decomposition (and back after).

    Returns
    -------
    numpy.ndarray
        (m, len(target_cols)) reconstructed values (not clipped: a smoother applied afterwards
        stays linear; clip its output).
    """
    x = dense(all_genes)
    mean, scale, vt = pca_basis(x, k, standardise)
    cols = np.arange(x.shape[1]) if target_cols is None else np.asarray(target_cols)
    return reconstruct(x, mean, scale, vt, k, cols)
