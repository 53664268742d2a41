"""Per-spot H&E features: sampled at the right pixels, at any lattice position, cached, and fast."""

from __future__ import annotations

import numpy as np
import pytest

from napari_s2s.core.data import histology_features as hist
from napari_s2s.core.data.histology_features import (
    feature_names,
    histology_available,
    histology_features,
    histology_view,
    image_positions,
)
from napari_s2s.core.data.lattice import apply_affine
from napari_s2s.core.methods import HistologyView

WHITE = np.array([243, 241, 246], dtype=np.uint8)
PINK = np.array([236, 160, 195], dtype=np.uint8)
PURPLE = np.array([70, 40, 140], dtype=np.uint8)


def _painted_view(radius_fullres: float, scalefactor: float, n: int = 5):
    """A square-lattice slide: pink tissue on white glass, tilted and offset affine (x follows col)."""
    pitch = 3.0 * radius_fullres
    affine = np.array([[0.02 * pitch, pitch, 1.3 * pitch], [pitch, -0.03 * pitch, 1.7 * pitch]])
    rr, cc = np.mgrid[0:n, 0:n]
    rows, cols = rr.ravel(), cc.ravel()
    xy = apply_affine(affine, rows, cols) * scalefactor
    h = int(xy[:, 1].max() + 2 * pitch * scalefactor)
    w = int(xy[:, 0].max() + 3 * pitch * scalefactor)  # not square: swapped axes would show
    img = np.empty((h, w, 3), np.uint8)
    img[:] = WHITE
    pad = int(pitch * scalefactor)
    x0, y0 = int(xy[:, 0].min()) - pad, int(xy[:, 1].min()) - pad
    img[max(y0, 0) : int(xy[:, 1].max()) + pad, max(x0, 0) : int(xy[:, 0].max()) + pad] = PINK
    view = HistologyView(
        images={"hires": img},
        scalefactors={"hires": scalefactor},
        grid_to_px=affine,
        spot_diameter_px=2.0 * radius_fullres,
    )
    return view, rows, cols, xy


def _paint_disk(img: np.ndarray, x: float, y: float, r: float, colour: np.ndarray) -> np.ndarray:
    out = img.copy()
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    out[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = colour
    return out


@pytest.mark.parametrize("radius, scalefactor", [(8.0, 1.0), (10.0, 0.5), (60.0, 1.0)])
def test_painted_spot_changes_only_its_own_features(radius, scalefactor):
    # the third case has a footprint large enough for the image to be shrunk before filtering
    view, rows, cols, xy = _painted_view(radius, scalefactor)
    before = histology_features(view, rows, cols, "square")
    k = 12  # (row 2, col 2)
    img = _paint_disk(view.images["hires"], xy[k, 0], xy[k, 1], radius * scalefactor, PURPLE)
    painted = HistologyView(
        images={"hires": img},
        scalefactors=view.scalefactors,
        grid_to_px=view.grid_to_px,
        spot_diameter_px=view.spot_diameter_px,
    )
    after = histology_features(painted, rows, cols, "square")
    names = feature_names()
    h = names.index("mean_H")
    grey = names.index("mean_grey")
    change = np.abs(after - before).max(axis=1)
    assert np.argmax(change) == k
    assert after[k, h] > before[k, h] + 0.02  # haematoxylin up
    assert after[k, grey] < before[k, grey] - 0.2  # darker
    others = np.delete(np.arange(len(rows)), k)
    assert change[others].max() < 1e-3 * change[k]


def test_dense_grid_positions_via_scale_or_half_integers():
    view, rows, cols, _ = _painted_view(8.0, 1.0)
    spots = histology_features(view, rows, cols, "square")
    dense = histology_features(view, 2 * rows, 2 * cols, "square", scale=2)
    np.testing.assert_allclose(dense, spots, atol=1e-6)
    half = histology_features(view, rows + 0.5, cols, "square")
    via_scale = histology_features(view, 2 * rows + 1, 2 * cols, "square", scale=2)
    np.testing.assert_allclose(half, via_scale, atol=1e-6)
    xy = image_positions(view, [1.5], [2.0])
    np.testing.assert_allclose(xy[0], apply_affine(view.grid_to_px, [1.5], [2.0])[0])


def test_features_follow_the_stain_pattern_on_the_synthetic_slide(synthetic_slide):
    s = synthetic_slide
    view = histology_view(s)
    use = s.usable()
    feats = histology_features(view, s.array_row[use], s.array_col[use], s.kind)
    assert feats.shape == (int(use.sum()), len(feature_names()))
    assert feats.dtype == np.float32 and np.isfinite(feats).all()
    tumour = s.lognorm(["TumorMarker"])[:, 0]
    names = feature_names()
    r_h = np.corrcoef(feats[:, names.index("mean_H")], tumour)[0, 1]
    r_nuc = np.corrcoef(feats[:, names.index("mean_nuclear")], tumour)[0, 1]
    assert r_h > 0.6 and r_nuc > 0.6
    # the same features read one spot off (shifted by two columns) follow the pattern less well
    shifted = histology_features(view, s.array_row[use], s.array_col[use] + 6, s.kind)
    assert np.corrcoef(shifted[:, names.index("mean_H")], tumour)[0, 1] < r_h - 0.1


def test_cluster_features_are_fractions(synthetic_slide):
    s = synthetic_slide
    view = histology_view(s)
    use = s.usable()
    f = histology_features(view, s.array_row[use], s.array_col[use], s.kind, features="clusters", n_clusters=4)
    assert f.shape == (int(use.sum()), 4)
    assert (f >= -1e-6).all() and (f.sum(axis=1) <= 1 + 1e-4).all()
    both = histology_features(view, s.array_row[use][:5], s.array_col[use][:5], s.kind, features="all", n_clusters=4)
    assert both.shape == (5, len(feature_names("all", n_clusters=4)))
    with pytest.raises(ValueError):
        histology_features(view, [0], [0], s.kind, features="nope")


def test_maps_are_cached_per_image_content(synthetic_slide):
    view = histology_view(synthetic_slide)
    hist.clear_cache()
    img = view.images["hires"]
    a = hist._feature_maps(img, 5.0, "basic", hist.N_CLUSTERS)
    assert hist._feature_maps(img.copy(), 5.0, "basic", hist.N_CLUSTERS) is a  # same content
    edited = img.copy()
    edited[0, 0] = 0
    assert hist._feature_maps(edited, 5.0, "basic", hist.N_CLUSTERS) is not a
    assert hist._feature_maps(img, 6.0, "basic", hist.N_CLUSTERS) is not a


@pytest.mark.parametrize("radius", [5.0, 60.0])  # 60: the image is first shrunk by block means
def test_large_images_are_filtered_in_strips_with_the_same_maps(read_shared, monkeypatch, radius):
    """A Visium HD hires image (36 M pixels) is filtered strip by strip: the same maps as the
    whole-image route (real H&E, strips far smaller than the image and not a multiple of the shrink)."""
    img = np.ascontiguousarray(histology_view(read_shared("her2st_B4")).images["hires"][:700, :650])
    whole = hist._compute_maps(img, radius, "basic", hist.N_CLUSTERS)
    monkeypatch.setattr(hist, "STRIP_ABOVE", 0)
    monkeypatch.setattr(hist, "STRIP_ROWS", 40)
    strips = hist._compute_maps(img, radius, "basic", hist.N_CLUSTERS)
    assert (strips.shrink, strips.stride, strips.names) == (whole.shrink, whole.stride, whole.names)
    np.testing.assert_allclose(strips.maps, whole.maps, rtol=0, atol=1e-6)
    # a map budget smaller than the image's maps: a coarser stride, the same values where sampled
    monkeypatch.setattr(hist, "MAX_MAP_BYTES", whole.maps.nbytes // 3)
    coarse = hist._compute_maps(img, radius, "basic", hist.N_CLUSTERS)
    assert coarse.maps.nbytes <= whole.maps.nbytes // 3 and coarse.stride > whole.stride
    if whole.stride == 1:
        np.testing.assert_allclose(coarse.maps, whole.maps[:, :: coarse.stride, :: coarse.stride], atol=1e-6)


@pytest.mark.parametrize("sigma,stride", [(0.5, 1), (2.6, 1), (7.3, 3)])  # 7.3 / 3: HER2ST's hires image
def test_footprint_windows_are_the_whole_gaussian_filter_subsampled(read_shared, sigma, stride):
    """The maps' Gaussian window runs its second pass over the kept rows only: the same numbers as
    filtering the whole plane and subsampling (bit for bit), on a real H&E channel and on a strip."""
    from scipy import ndimage

    grey = histology_view(read_shared("her2st_C2")).images["hires"][:301, :257].mean(axis=2).astype(np.float32)
    whole = ndimage.gaussian_filter(grey, sigma, truncate=2.0, mode="nearest")
    assert np.array_equal(hist._separable_window(grey, sigma, stride), whole[::stride, ::stride])
    strip = hist._separable_window(grey, sigma, stride, rows=slice(40, 200))
    assert np.array_equal(strip, whole[40:200][::stride, ::stride])


def test_histology_available(synthetic_slide):
    from napari_s2s.core.data.synthetic import make_synthetic_slide

    assert histology_available(synthetic_slide)
    assert histology_available(histology_view(synthetic_slide))
    assert not histology_available(synthetic_slide, min_px_per_spot=1000)
    assert not histology_available(make_synthetic_slide(n_rows=8, n_cols=16, image=False))
    assert not histology_available(None)
    view = histology_view(synthetic_slide)
    unknown = HistologyView(images=view.images, scalefactors=view.scalefactors, grid_to_px=view.grid_to_px)
    # without the diameter the footprint comes from the pitch: 0.6 * 40 px * 0.5 = 12 px across
    assert histology_available(unknown, min_px_per_spot=11.0, kind="hex")
    assert not histology_available(unknown, min_px_per_spot=13.0, kind="hex")


def test_real_slides_tissue_features_separate_in_and_off_tissue_spots(read_shared):
    s = read_shared("st_mouse_olfactory_bulb")  # has off-tissue spots
    view = histology_view(s)
    feats = histology_features(view, s.array_row, s.array_col, s.kind)
    tissue = feats[:, feature_names().index("mean_tissue")]
    inside = s.in_tissue
    # rank-based separation (AUC) of in- vs off-tissue spots by the tissue fraction under them
    ranks = np.argsort(np.argsort(tissue))
    auc = (ranks[inside].mean() - (inside.sum() - 1) / 2) / (~inside).sum()
    assert auc > 0.9


def test_real_visium_slide_whole_dense_grid(read_shared):
    import time

    s = read_shared("visium_mouse_brain")  # lowres only: about 4.6 px per spot
    assert histology_available(s)
    view = histology_view(s)
    use = s.usable()
    rr, cc = np.mgrid[
        2 * s.array_row.min() : 2 * s.array_row.max() + 1, 2 * s.array_col.min() : 2 * s.array_col.max() + 1
    ]
    keep = (rr + cc) % 2 == 0
    t0 = time.perf_counter()
    dense = histology_features(view, rr[keep], cc[keep], s.kind, scale=2)
    spots = histology_features(view, s.array_row[use], s.array_col[use], s.kind)
    assert time.perf_counter() - t0 < 30.0
    assert dense.shape[0] > 4 * use.sum() and np.isfinite(dense).all()
    # the hippocampus' dense cell layers: haematoxylin varies between spots, not only image noise
    sd = spots.std(axis=0)
    assert sd[feature_names().index("mean_H")] > 0
    assert not histology_available(s, min_px_per_spot=6.0)


def test_covariate_function_standardises_on_fit_spots_and_maps_grids(synthetic_slide):
    s = synthetic_slide
    view = histology_view(s)
    use = s.usable()
    rows, cols = s.array_row[use], s.array_col[use]
    f_dense = hist.covariate_function(view, s.kind, rows, cols, scale=2, n_components=None)
    z = f_dense(2 * rows, 2 * cols)
    assert z.shape == (len(rows), len(feature_names())) and f_dense.n_channels == z.shape[1]
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-3)
    # the benchmark's convention: dense grid of the measured sub-lattice = array coords - offset
    a, b = 2, 4
    f_off = hist.covariate_function(view, s.kind, rows, cols, scale=1, offset=(a, b), n_components=None)
    np.testing.assert_allclose(f_off(rows - a, cols - b), z, atol=1e-5)
    f_pca = hist.covariate_function(view, s.kind, rows, cols, scale=2, n_components=3)
    p = f_pca(2 * rows, 2 * cols)
    assert p.shape == (len(rows), 3) and f_pca.n_channels == 3
    np.testing.assert_allclose(p.std(axis=0), 1, atol=1e-3)
    # mid-way positions of the dense grid read the image between spots, not a copy of a spot
    mid = f_dense(2 * rows[:20] + 1, 2 * cols[:20] + 1)
    assert not np.allclose(mid, z[:20])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("fmt", ["torchscript", "export"])
def test_local_encoder_reads_each_spots_patch(tmp_path, fmt):
    torch = pytest.importorskip("torch")

    class MeanColour(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))

    if fmt == "torchscript":
        path = tmp_path / "encoder.pt"
        torch.jit.save(torch.jit.script(MeanColour()), str(path))
    else:
        path = tmp_path / "encoder.pt2"
        batch = torch.export.Dim("batch")
        example = (torch.zeros(2, 3, 224, 224),)
        torch.export.save(torch.export.export(MeanColour(), example, dynamic_shapes=({0: batch},)), str(path))
    view, rows, cols, xy = _painted_view(8.0, 1.0)
    kind = f"encoder:{path}"
    before = histology_features(view, rows, cols, "square", features=kind)
    assert before.shape == (len(rows), 3)
    k = 7
    img = _paint_disk(view.images["hires"], xy[k, 0], xy[k, 1], 8.0, PURPLE)
    painted = HistologyView(
        images={"hires": img},
        scalefactors=view.scalefactors,
        grid_to_px=view.grid_to_px,
        spot_diameter_px=view.spot_diameter_px,
    )
    after = histology_features(painted, rows, cols, "square", features=kind)
    change = np.abs(after - before).max(axis=1)
    assert np.argmax(change) == k and np.delete(change, k).max() < 1e-5
    assert after[k, 0] < before[k, 0] - 1.0  # red drops (ImageNet-normalised units)
    bad = tmp_path / "not_a_model.pt"
    bad.write_bytes(b"not torchscript")
    with pytest.raises(ValueError, match="not a TorchScript"):
        histology_features(view, rows, cols, "square", features=f"encoder:{bad}")
    with pytest.raises(ValueError, match="not found"):
        histology_features(view, rows, cols, "square", features=f"encoder:{tmp_path / 'missing.pt'}")
