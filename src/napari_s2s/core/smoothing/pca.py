"""Denoising spots by projection on their top principal components over many genes."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

def dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


def pca_basis(x: np.ndarray, k_max: int, standardise: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column means, column scales and the top ``k_max`` loadings (k_max, genes) of ``x`` (spots x genes).

    With ``standardise`` the columns are divided by their standard deviation before the SVD (every
    gene weighs the same); otherwise the scales are 1 (centred PCA).
    """
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
        evals, v = np.linalg.eigh(xc.T @ xc)
        order = np.argsort(evals)[::-1][:k]
        evals, v = evals[order], v[:, order]
        keep = evals > max(float(evals[0]), 0.0) * 1e-10 if evals.size else evals > 0
        vt = v[:, keep].T
    return vt


def reconstruct(x, mean, scale, vt, k, cols) -> np.ndarray:
    """Rank-``k`` reconstruction of columns ``cols`` of ``x`` on the basis ``(mean, scale, vt)``."""
    scores = ((x - mean) / scale) @ vt[:k].T
    return (scores @ vt[:k][:, cols]) * scale[cols] + mean[cols]


def pca_denoise(
    all_genes: np.ndarray, target_cols: np.ndarray | None, k: int, standardise: bool = False
) -> np.ndarray:
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
