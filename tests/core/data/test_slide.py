"""Slide model: normalisation, gene selection, grids and their transforms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from napari_s2s.core.data.slide import Slide, grid_from_spots


def tiny_square_slide():
    counts = np.array(
        [
            [1, 0, 3],
            [2, 2, 0],
            [0, 0, 0],  # zero counts: not usable
            [4, 4, 2],
        ],
        dtype=np.float32,
    )
    return Slide(
        counts=sp.csr_matrix(counts),
        genes=["A", "B", "C"],
        barcodes=["s0", "s1", "s2", "s3"],
        array_row=[0, 0, 1, 1],
        array_col=[0, 1, 0, 1],
        in_tissue=[True, True, True, True],
    )


def test_lognorm_by_hand():
    s = tiny_square_slide()
    assert s.usable().tolist() == [True, True, False, True]
    totals = np.array([4.0, 4.0, 10.0])
    med = np.median(totals)
    expected = np.log1p(np.array([[1, 0, 3], [2, 2, 0], [4, 4, 2]]) * (med / totals)[:, None])
    assert np.allclose(s.lognorm(["A", "B", "C"]), expected)
    assert s.lognorm(["C"]).dtype == np.float32
    assert np.allclose(s.lognorm_sparse().toarray(), expected)


def test_top_variable_genes_on_real_slide(read_shared):
    s = read_shared("her2st_C2")
    top = s.top_variable_genes(10)
    assert len(top) == 10 and len(set(top)) == 10
    x = s.lognorm(top)
    # eligible: detected in >= 10 % of spots; ordered by decreasing variance
    assert ((x > 0).mean(axis=0) >= 0.1).all()
    v = x.var(axis=0)
    assert np.all(np.diff(v) <= 1e-5)


def test_grid_places_every_spot(read_shared):
    s = read_shared("visium_mouse_brain")
    genes = s.top_variable_genes(3)
    g = s.grid(genes)
    vals = s.lognorm(genes)
    ii, jj = g.spot_ij.T
    assert np.array_equal(g.values[:, ii, jj].T, vals)
    assert g.tissue.sum() == s.usable().sum()
    assert g.lattice_nodes[ii, jj].all()
    assert g.lattice_nodes.mean() == pytest.approx(0.5, abs=0.01)  # hex checkerboard
    # grid index -> world lands on the spot's pixel position in micrometres
    pts = np.stack([ii, jj, np.ones_like(ii)]).astype(float)
    world = (g.index_to_world @ pts)[:2].T
    xy = s.pixel_xy[s.usable()] * s.geometry.um_per_px
    assert np.abs(world - xy[:, ::-1]).max() < 0.05 * s.geometry.pitch_um


def test_a_coarser_lattice_grid_puts_spots_where_the_slide_grid_does(read_shared):
    """``grid_from_spots`` with ``scale=2`` (a result's measured lattice): each spot lands on the same
    world position as on the slide's own grid, with the same values."""
    slide = read_shared("st_mouse_olfactory_bulb")
    genes = slide.top_variable_genes(2)
    full = slide.grid(genes)
    use = slide.usable()
    rows, cols = slide.array_row[use], slide.array_col[use]
    sub = (rows % 2 == 0) & (cols % 2 == 0)
    vals = slide.lognorm(genes)[sub]
    coarse = grid_from_spots(rows[sub] // 2, cols[sub] // 2, vals, genes, slide.kind, slide.geometry, scale=2.0)
    ij = np.c_[coarse.spot_ij, np.ones(int(sub.sum()))]
    fij = np.c_[full.spot_ij[sub], np.ones(int(sub.sum()))]
    np.testing.assert_allclose((coarse.index_to_world @ ij.T)[:2], (full.index_to_world @ fij.T)[:2], atol=1e-9)
    ci, cj = coarse.spot_ij.T
    fi, fj = full.spot_ij[sub].T
    np.testing.assert_array_equal(coarse.values[:, ci, cj], full.values[:, fi, fj])
    assert coarse.tissue.sum() == sub.sum() and np.isnan(coarse.values[:, ~coarse.tissue]).all()


def test_hex_display_bricks_keep_true_positions(read_shared):
    s = read_shared("visium_mouse_brain_dg")
    g = s.grid(s.top_variable_genes(1))
    img, aff = g.display()
    assert img.shape[2] == g.shape[1] + 1
    ii, jj = g.spot_ij.T
    # each node is painted at its column and the next one; their midpoint maps to the node centre
    assert np.array_equal(img[0, ii, jj], img[0, ii, jj + 1])
    assert np.array_equal(img[0, ii, jj], g.values[0, ii, jj])
    mid = np.stack([ii, jj + 0.5, np.ones_like(ii)]).astype(float)
    assert np.allclose((aff @ mid)[:2], (g.index_to_world @ np.stack([ii, jj, np.ones_like(ii)]))[:2])


def test_synthetic_slide(synthetic_slide):
    s = synthetic_slide
    assert s.kind == "hex" and s.geometry.pitch_um == 100.0
    assert "TumorMarker" in s.top_variable_genes(3)
    assert s.images["hires"].dtype == np.uint8
    assert 300 < s.usable().sum() < 900


@pytest.mark.parametrize("name", ["her2st_C2", "visium_mouse_brain", "st_mouse_olfactory_bulb"])
def test_gene_statistics_in_blocks_are_scipys_to_the_bit(read_shared, monkeypatch, name):
    """Gene selection at real size streams over blocks of rows without copying the matrix; it must
    pick the same genes as scipy's means of the whole log-normalised matrix (benchmarks depend on it)."""
    from napari_s2s.core.data import slide as slide_mod

    s = read_shared(name)
    x = s.lognorm_sparse()
    m = x.shape[0]
    detected = np.asarray((x > 0).sum(axis=0)).ravel() / m
    var = (
        np.asarray(x.multiply(x).mean(axis=0), np.float64).ravel() - np.asarray(x.mean(axis=0), np.float64).ravel() ** 2
    )
    monkeypatch.setattr(slide_mod, "_BLOCK_NNZ", max(x.nnz // 7, 1))  # several blocks even on small slides
    got_det, got_var = slide_mod._gene_stats(s.counts[s.usable()], s.size_factors())
    assert np.array_equal(got_det, detected) and np.array_equal(got_var, var)


def test_slide_keeps_a_csr_float32_matrix_as_it_is():
    m = sp.random(50, 40, density=0.1, format="csr", dtype=np.float32, random_state=0)
    s = Slide(
        counts=m,
        genes=[f"g{i}" for i in range(40)],
        barcodes=[f"b{i}" for i in range(50)],
        array_row=np.arange(50) // 10,
        array_col=np.arange(50) % 10,
        in_tissue=np.ones(50, bool),
    )
    assert s.counts is m  # no copy of a real-size matrix
