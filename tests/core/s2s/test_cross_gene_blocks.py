"""The cross-gene reconstruction at real size: principal directions from the genes' Gram matrix,
accumulated over blocks of spots, give the SVD's reconstruction (without float64 copies of the matrix)."""

from __future__ import annotations

import numpy as np

from napari_s2s.core.s2s import train as T


def test_gram_route_equals_the_svd(monkeypatch):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(3000, 60)) @ rng.normal(size=(60, 60))).astype(np.float32)
    y = (x[:, :4] + rng.normal(size=(3000, 4))).astype(np.float32)
    svd = T.cross_gene_reconstruction(y, x, 20)
    monkeypatch.setattr(T, "GRAM_ABOVE", 0)
    gram = T.cross_gene_reconstruction(y, x, 20)
    assert np.allclose(gram, svd, atol=1e-5 * np.abs(svd).max())


def test_gram_route_drops_null_directions(monkeypatch):
    rng = np.random.default_rng(1)
    base = rng.normal(size=(400, 3))
    x = np.concatenate([base, base, base @ rng.normal(size=(3, 4))], axis=1).astype(np.float32)  # rank 3
    u = T._top_left_singular(x, 8, block=64)
    assert u.shape == (400, 3) and np.allclose(u.T @ u, np.eye(3), atol=1e-8)
