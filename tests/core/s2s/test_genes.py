"""Which genes the networks train on: spatial signal, auxiliary genes, signal-weighted sampling."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from napari_s2s.core.data.lattice import physical
from napari_s2s.core.s2s.genes import auxiliary_genes, sampling_weights, spatial_signal


def _grid(n: int = 20) -> np.ndarray:
    r, c = np.mgrid[0:n, 0:n]
    return physical(r.ravel(), c.ravel(), "square")


def test_signal_separates_a_smooth_field_from_noise_and_constants(monkeypatch):
    phys = _grid()
    rng = np.random.default_rng(0)
    smooth = np.sin(phys[:, 0] / 4.0) + np.cos(phys[:, 1] / 5.0)
    noise = rng.normal(size=len(phys))
    x = np.stack([smooth, noise, np.full(len(phys), 3.0), smooth + 0.5 * noise], axis=1)
    s = spatial_signal(phys, x)
    assert s[0] > 0.9 and abs(s[1]) < 0.15 and s[2] == 0.0
    assert s[1] < s[3] < s[0]  # half-noisy in between
    np.testing.assert_allclose(spatial_signal(phys, sp.csr_matrix(x)), s)  # sparse input: the same
    import napari_s2s.core.s2s.genes as genes

    monkeypatch.setattr(genes, "GENE_BLOCK_VALUES", len(phys))  # a real-size slide: one gene at a time
    np.testing.assert_allclose(spatial_signal(phys, sp.csr_matrix(x)), s)


def test_signal_of_a_real_slide_drops_to_noise_when_its_spots_are_shuffled(read_shared):
    slide = read_shared("her2st_C2")
    use = slide.usable()
    phys = physical(slide.array_row[use], slide.array_col[use], slide.kind)
    values = slide.lognorm(slide.top_variable_genes(30))
    real = spatial_signal(phys, values)
    shuffled = spatial_signal(phys, values[np.random.default_rng(1).permutation(len(values))])
    assert np.median(real) > 0.3 and abs(np.median(shuffled)) < 0.1


def test_auxiliary_genes_are_the_strongest_outside_the_targets():
    signal = np.array([0.9, 0.1, 0.8, -0.2, 0.5, 0.7, 0.0])
    np.testing.assert_array_equal(auxiliary_genes(signal, np.array([0]), 3), [2, 5, 4])
    np.testing.assert_array_equal(auxiliary_genes(signal, np.array([0, 2, 5, 4, 1]), 5), [])  # no signal left
    assert auxiliary_genes(signal, np.array([], int), 0).size == 0


def test_sampling_weights_follow_the_signal_with_a_floor():
    p = sampling_weights(np.array([0.8, 0.4, -0.3, 0.0]))
    assert p.sum() == pytest.approx(1.0) and p[0] == pytest.approx(2 * p[1])
    assert p[2] == p[3] == pytest.approx(0.1 * p[0])  # noise genes are still drawn, rarely
    np.testing.assert_allclose(sampling_weights(np.array([-0.1, 0.0])), [0.5, 0.5])
