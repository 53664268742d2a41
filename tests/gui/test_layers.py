"""Layer geometry: gene grids sit exactly on the spots of the H&E, in micrometres (real slides)."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image

from napari_s2s.gui.layers import embed_affine, gene_limits, s2s_meta, slide_layers

ALIGNED = ["visium_mouse_brain", "her2st_C2", "st_mouse_olfactory_bulb"]


def _layers(slide, genes):
    out = {}
    for data, kwargs, kind in slide_layers(slide, genes=genes):
        assert kind == "image"
        layer = Image(data, **kwargs)
        out[s2s_meta(layer)["kind"]] = layer
    return out


@pytest.mark.parametrize("name", ALIGNED)
def test_gene_grid_lands_on_spot_pixels(read_shared, name):
    slide = read_shared(name)
    genes = slide.top_variable_genes(2)
    layers = _layers(slide, genes)
    gene_layer, he = layers["measured"], layers["he"]
    assert [str(u) for u in gene_layer.units[1:]] == ["micrometer", "micrometer"]
    assert [str(u) for u in he.units] == ["micrometer", "micrometer"]

    grid = s2s_meta(gene_layer)["grid"]
    use = slide.usable()
    xy = slide.pixel_xy[use]
    ok = np.all(np.isfinite(xy), axis=1)
    ij = grid.spot_ij[ok].astype(float)
    if slide.kind == "hex":
        ij[:, 1] += 0.5  # brick image: a node covers its column and the next
    um = slide.geometry.um_per_px
    expected = xy[ok][:, ::-1] * um  # (y, x) in um
    tol = slide.geometry.residual_pitch * slide.geometry.pitch_px * um + 1e-6

    world = np.array([gene_layer.data_to_world((1, i, j)) for i, j in ij])
    assert np.all(world[:, 0] == 1)  # gene axis untouched
    err = np.hypot(*(world[:, 1:] - expected).T)
    assert err.max() <= tol
    # the typical spot is much closer than the worst one
    assert np.median(err) < 0.5 * slide.geometry.pitch_px * um

    # the value shown there is the spot's measured value
    values = slide.lognorm(genes)[ok]
    ii, jj = grid.spot_ij[ok].T
    shown = gene_layer.data[1][ii, jj]
    np.testing.assert_array_equal(shown, values[:, 1])
    if slide.kind == "hex":  # and its brick's right half too
        np.testing.assert_array_equal(gene_layer.data[1][ii, jj + 1], values[:, 1])

    # H&E: the spot's image pixel maps to the same world point
    name_img = s2s_meta(he)["image"]
    px = xy[ok] * slide.scalefactors[name_img]
    he_world = np.array([he.data_to_world((y, x)) for x, y in px])
    np.testing.assert_allclose(he_world, expected, rtol=0, atol=1e-6 * max(1.0, np.abs(expected).max()))


def test_layer_metadata_carries_what_the_widget_needs(synthetic_slide):
    data, kwargs, _ = slide_layers(synthetic_slide, genes=["TumorMarker", "Noise1"])[1]
    meta = s2s_meta(kwargs)
    assert meta["kind"] == "measured"
    assert meta["genes"] == ["TumorMarker", "Noise1"]
    assert meta["slide"] is synthetic_slide
    assert meta["library_id"] == "synthetic" and meta["units"] == "um"
    assert data.shape[0] == 2 and kwargs["affine"].shape == (4, 4)


def test_low_genes_stay_visible(synthetic_slide):
    """Contrast limits come from positive values, so a mostly-zero gene is not mapped to black."""
    grid = synthetic_slide.grid(["Noise1", "TumorMarker"])
    for g, (lo, hi) in enumerate(gene_limits(grid.values)):
        v = grid.values[g][np.isfinite(grid.values[g])]
        assert lo == 0 and 0 < hi <= v.max()
        assert np.mean(v[v > 0] > hi) <= 0.02  # at most ~1% saturate


def test_embed_affine_keeps_leading_axes():
    a = np.array([[2.0, 0.5, 10.0], [0.1, 3.0, -4.0], [0, 0, 1]])
    e = embed_affine(a, 3)
    assert e.shape == (4, 4)
    np.testing.assert_array_equal(e[0], [1, 0, 0, 0])
    np.testing.assert_array_equal(e[1:3, 1:3], a[:2, :2])
    np.testing.assert_array_equal(e[1:3, 3], a[:2, 2])


@pytest.mark.parametrize("name", ["st_mouse_olfactory_bulb", "her2st_C2"])
def test_imputed_dense_grid_lands_on_the_same_spots(read_shared, name):
    """An imputed (x2 dense) stack puts each measured spot where the measured stack does."""
    from napari_s2s.core.s2s.engine import ImputedResult
    from napari_s2s.gui.layers import gene_stack_layer

    slide = read_shared(name)
    genes = slide.top_variable_genes(2)
    use = slide.usable()
    values = slide.lognorm(genes)
    result = ImputedResult(
        genes=genes,
        dense_rows=2 * slide.array_row[use],
        dense_cols=2 * slide.array_col[use],
        measured=np.ones(int(use.sum()), bool),
        values=values,
        xy_px=None,
        kind=slide.kind,
        grid_to_world=slide.geometry.grid_to_world(),
        units=slide.geometry.units,
    )
    data, kwargs, _ = gene_stack_layer(slide, result.grid(), "imputed")
    imputed = Image(data, **kwargs)
    measured = _layers(slide, genes)["measured"]
    gm, gi = s2s_meta(measured)["grid"], s2s_meta(imputed)["grid"]
    half = 0.5 if slide.kind == "hex" else 0.0
    ii_m = slide.array_row[use] - gm.origin[0]
    jj_m = slide.array_col[use] - gm.origin[1]
    ii_i = 2 * slide.array_row[use] - gi.origin[0]
    jj_i = 2 * slide.array_col[use] - gi.origin[1]
    w_m = np.array([measured.data_to_world((0, i, j + half)) for i, j in zip(ii_m, jj_m)])
    w_i = np.array([imputed.data_to_world((0, i, j + half)) for i, j in zip(ii_i, jj_i)])
    np.testing.assert_allclose(w_i, w_m, atol=1e-6 * np.abs(w_m).max())
    np.testing.assert_array_equal(imputed.data[1][ii_i, jj_i], values[:, 1])
