"""Readers on every real shared slide, valid variants derived from them, and every kind of bad input."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import anndata
import numpy as np
import pytest
import scipy.sparse as sp

from napari_s2s.core.data.io import is_slide_path, read_slide
from napari_s2s.core.errors import SlideError

# (name, spots_total, in_tissue, genes, kind, image names, technology)
EXPECTED = [
    ("visium_mouse_brain", 4992, 2702, 100, "hex", {"lowres"}, "visium"),
    ("visium_mouse_brain_dg", 624, 624, 634, "hex", {"lowres"}, "visium"),
    ("her2st_C2", 187, 187, 15706, "square", {"hires"}, "st_1k"),
    ("her2st_B4", 283, 283, 15289, "square", {"hires"}, "st_1k"),
    ("st_breast_cancer_layer2", 251, 251, 14789, "square", set(), None),
    ("st_mouse_olfactory_bulb", 1934, 379, 1000, "hex", {"hires"}, "st_2k"),
]


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("name,total,tissue,genes,kind,images,tech", EXPECTED)
def test_reads_every_shared_slide(read_shared, name, total, tissue, genes, kind, images, tech):
    s = read_shared(name)
    assert s.n_spots_total == total
    assert int(s.in_tissue.sum()) == tissue
    assert s.n_genes == genes
    assert s.kind == kind
    assert set(s.images) == images
    assert s.geometry.technology == tech
    assert s.counts.dtype == np.float32 and sp.issparse(s.counts)
    assert len(set(s.genes)) == s.n_genes
    for k, img in s.images.items():
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert s.scalefactors[k] > 0


def test_visium_geometry_in_micrometres(read_shared):
    s = read_shared("visium_mouse_brain")
    g = s.geometry
    assert g.pitch_um == 100.0
    # 10x's spot_diameter_fullres is the pixel size of a 65 um circle: independent check of the scale
    assert g.um_per_px == pytest.approx(65.0 / s.spot_diameter_px, rel=0.01)
    assert g.residual_pitch < 0.05
    # spots from the fitted lattice land on their recorded pixel positions
    t = s.in_tissue
    world = s.spot_world()[t]
    xy = s.pixel_xy[t]
    assert np.allclose(world[:, ::-1] / g.um_per_px, xy, atol=0.05 * g.pitch_px)


def test_legacy_st_residual_is_tolerated(read_shared):
    s = read_shared("her2st_B4")
    assert 0.05 < s.geometry.residual_pitch < 0.5  # legacy ST arrays deviate by a few tenths of a pitch
    assert s.geometry.pitch_um == 200.0


def test_olfactory_bulb_off_tissue_nan_positions(read_shared):
    s = read_shared("st_mouse_olfactory_bulb")
    assert np.isnan(s.pixel_xy[~s.in_tissue]).any()
    assert np.isfinite(s.pixel_xy[s.in_tissue]).all()
    assert s.genes[0].startswith("ENSMUSG")
    # the staggered 2k array is not a regular hex lattice: rows are not sqrt(3)/2 pitch apart
    a = s.geometry.grid_to_px
    ratio = np.hypot(*a[:, 0]) / np.hypot(*(2 * a[:, 1]))
    assert abs(ratio - np.sqrt(3) / 2) > 0.1


def test_grid_only_slide_works_in_pitch_units(read_shared):
    s = read_shared("st_breast_cancer_layer2")
    assert s.pixel_xy is None and s.geometry.units == "pitch"
    assert s.geometry.um_per_px is None and s.geometry.pitch_um is None


def test_is_slide_path(data_dir):
    assert is_slide_path(data_dir / "visium_mouse_brain")
    assert is_slide_path(data_dir / "her2st_C2.h5ad")
    assert not is_slide_path(data_dir / "README.md")
    assert not is_slide_path(data_dir)


# ---------------------------------------------------------------------- valid variants
def _copy_visium(data_dir, tmp_path) -> Path:
    dst = tmp_path / "outs"
    shutil.copytree(data_dir / "visium_mouse_brain", dst)
    for f in dst.rglob("*"):
        f.chmod(0o644 if f.is_file() else 0o755)
    dst.chmod(0o755)
    return dst


def test_spaceranger2_positions_with_header_and_parent_folder(data_dir, tmp_path):
    dst = _copy_visium(data_dir, tmp_path)
    old = dst / "spatial" / "tissue_positions_list.csv"
    header = "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres\n"
    (dst / "spatial" / "tissue_positions.csv").write_text(header + old.read_text())
    old.unlink()
    s = read_slide(tmp_path)  # the parent of outs/ works too
    ref = read_slide(data_dir / "visium_mouse_brain")
    assert s.n_spots_total == ref.n_spots_total
    assert np.array_equal(s.array_row, ref.array_row)
    assert np.allclose(s.pixel_xy, ref.pixel_xy)


def test_hires_only_folder(data_dir, tmp_path):
    dst = _copy_visium(data_dir, tmp_path)
    lowres = dst / "spatial" / "tissue_lowres_image.png"
    lowres.rename(dst / "spatial" / "tissue_hires_image.png")
    import json

    sf = json.loads((dst / "spatial" / "scalefactors_json.json").read_text())
    sf["tissue_hires_scalef"] = sf.pop("tissue_lowres_scalef")
    (dst / "spatial" / "scalefactors_json.json").write_text(json.dumps(sf))
    s = read_slide(dst)
    assert set(s.images) == {"hires"}
    assert s.best_image() == "hires"


def test_raw_matrix_only_folder(data_dir, tmp_path):
    dst = _copy_visium(data_dir, tmp_path)
    (dst / "filtered_feature_bc_matrix.h5").unlink()
    s = read_slide(dst)
    assert int(s.in_tissue.sum()) == 2702
    assert s.n_spots > 2702  # raw matrix includes off-tissue barcodes


def test_pixel_only_h5ad_recovers_the_lattice(data_dir, tmp_path):
    for name in ("her2st_C2.h5ad", "visium_mouse_brain_dg.h5ad"):
        a = anndata.read_h5ad(data_dir / name)
        ref = read_slide(data_dir / name)
        del a.obs["array_row"], a.obs["array_col"]
        out = tmp_path / name
        a.write_h5ad(out)
        s = read_slide(out)
        assert s.kind == ref.kind
        # same lattice up to a shift and the orientation of the axes: neighbours stay neighbours
        for i in range(0, ref.n_spots, max(1, ref.n_spots // 20)):
            d_ref = np.abs(ref.array_row - ref.array_row[i]) + np.abs(ref.array_col - ref.array_col[i])
            d_new = np.abs(s.array_row - s.array_row[i]) + np.abs(s.array_col - s.array_col[i])
            near_ref = set(np.flatnonzero((d_ref > 0) & (d_ref <= 2)))
            near_new = set(np.flatnonzero((d_new > 0) & (d_new <= 2)))
            if ref.kind == "square":
                near_ref = set(np.flatnonzero(d_ref == 1))
                near_new = set(np.flatnonzero(d_new == 1))
            assert near_ref == near_new


# ---------------------------------------------------------------------- bad input
def _expect_error(path, *needles):
    before = _digest(Path(path)) if Path(path).exists() else None
    with pytest.raises(SlideError) as info:
        read_slide(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg
    for n in needles:
        assert n in msg.lower()
    if before is not None:
        assert _digest(Path(path)) == before  # input untouched
    return msg


def test_missing_path(tmp_path):
    _expect_error(tmp_path / "nope.h5ad", "no such file")


def test_corrupt_h5ad(tmp_path):
    p = tmp_path / "corrupt.h5ad"
    p.write_bytes(b"this is not hdf5" * 100)
    _expect_error(p, "not a readable .h5ad")


def test_truncated_h5ad(data_dir, tmp_path):
    p = tmp_path / "trunc.h5ad"
    p.write_bytes((data_dir / "her2st_C2.h5ad").read_bytes()[:200000])
    _expect_error(p, "not a readable")


def test_folder_that_is_not_spaceranger(tmp_path):
    (tmp_path / "something.txt").write_text("hello")
    _expect_error(tmp_path, "is not a slide", "space ranger output")


def test_folder_of_slides_names_them(formats_dir, data_dir):
    """A folder of samples (two Xenium crops; the shared data folder) says which slides it holds."""
    with pytest.raises(SlideError, match=r"holds 2 slides \(sample1, sample2\), not one.*napari-s2s batch"):
        read_slide(formats_dir / "xenium_mouse_brain_crops")
    with pytest.raises(SlideError, match=r"holds \d+ slides \(her2st_B4.h5ad, her2st_C2.h5ad, .* and \d+ more\)"):
        read_slide(data_dir)
    with pytest.raises(SlideError, match=r"the slide is the folder inside, square_002um: open that"):
        read_slide(formats_dir / "visium_hd_mouse_brain_layout" / "binned_outputs")


def test_corrupt_matrix_in_folder(data_dir, tmp_path):
    dst = _copy_visium(data_dir, tmp_path)
    (dst / "filtered_feature_bc_matrix.h5").write_bytes(b"garbage" * 1000)
    _expect_error(dst, "10x hdf5")


def test_not_a_slide_file(data_dir):
    _expect_error(data_dir / "README.md", "not a slide")


def _small_adata(data_dir) -> anndata.AnnData:
    return anndata.read_h5ad(data_dir / "her2st_C2.h5ad")


def test_h5ad_without_coordinates(data_dir, tmp_path):
    a = _small_adata(data_dir)
    del a.obs["array_row"], a.obs["array_col"]
    del a.obsm["spatial"]
    p = tmp_path / "nocoords.h5ad"
    a.write_h5ad(p)
    _expect_error(p, "no spatial coordinates")


def test_off_lattice_beads(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    a = anndata.AnnData(X=sp.csr_matrix(rng.poisson(1.0, size=(n, 20)).astype(np.float32)))
    a.obsm["spatial"] = rng.uniform(0, 5000, size=(n, 2))  # Slide-seq-like beads
    p = tmp_path / "beads.h5ad"
    a.write_h5ad(p)
    _expect_error(p, "not on a square or hex")


def test_non_integer_array_coordinates(data_dir, tmp_path):
    a = _small_adata(data_dir)
    a.obs["array_row"] = a.obs["array_row"] + np.random.default_rng(0).uniform(-0.4, 0.4, a.n_obs)
    p = tmp_path / "float_rows.h5ad"
    a.write_h5ad(p)
    _expect_error(p, "not integers")


@pytest.mark.parametrize("value,word", [(np.nan, "nan"), (-3.0, "negative")])
def test_nan_or_negative_counts(data_dir, tmp_path, value, word):
    a = _small_adata(data_dir)
    x = a.X.tolil()
    x[5, 7] = value
    x[9, 2] = value
    a.X = x.tocsr()
    p = tmp_path / f"bad_{word}.h5ad"
    a.write_h5ad(p)
    msg = _expect_error(p, word)
    assert "2 " in msg and "spot" in msg


def test_image_inconsistent_with_scale_factor(data_dir, tmp_path):
    a = _small_adata(data_dir)
    lib = next(iter(a.uns["spatial"]))
    a.uns["spatial"][lib]["scalefactors"]["tissue_hires_scalef"] *= 4  # spots now fall off the image
    p = tmp_path / "badscale.h5ad"
    a.write_h5ad(p)
    _expect_error(p, "inconsistent with its scale factor")


def test_unknown_genes_with_close_matches(read_shared):
    s = read_shared("her2st_C2")
    with pytest.raises(SlideError) as info:
        s.gene_indices(["ERBB2", "ERBB22", "erbb2"])
    msg = str(info.value)
    assert "ERBB22" in msg and "ERBB2" in msg and "\n" not in msg


def test_normalised_input_warns(data_dir, tmp_path):
    a = _small_adata(data_dir)
    a.X = a.X.multiply(0.37).tocsr()
    p = tmp_path / "normalised.h5ad"
    a.write_h5ad(p)
    with pytest.warns(UserWarning, match="normalised"):
        s = read_slide(p)
    assert s.n_spots == a.n_obs


def test_shared_h5ad_files_untouched_by_reading(data_dir):
    p = data_dir / "st_mouse_olfactory_bulb.h5ad"
    before = _digest(p)
    read_slide(p)
    assert _digest(p) == before


def test_negative_array_coordinates_are_distinct_spots_and_duplicates_are_caught(tmp_path):
    """Coordinates left of column 0 (a reopened hex result's dense grid reaches col -1, -2) are valid."""
    rr, cc = np.mgrid[0:6, -3:3]
    rng = np.random.default_rng(0)
    obs = {"array_row": rr.ravel(), "array_col": cc.ravel()}
    x = rng.poisson(3.0, (36, 5)).astype(np.float32)
    a = anndata.AnnData(X=x, obs=obs)
    a.obs_names = [f"s{i}" for i in range(36)]
    a.write_h5ad(tmp_path / "neg.h5ad")
    slide = read_slide(tmp_path / "neg.h5ad")
    assert slide.n_spots == 36 and slide.kind == "square" and slide.array_col.min() == -3
    a.obs["array_col"] = np.r_[a.obs["array_col"].to_numpy()[:-1], a.obs["array_col"].to_numpy()[0]]
    a.obs["array_row"] = np.r_[a.obs["array_row"].to_numpy()[:-1], a.obs["array_row"].to_numpy()[0]]
    a.write_h5ad(tmp_path / "dup.h5ad")
    with pytest.raises(SlideError, match="share the same array coordinates"):
        read_slide(tmp_path / "dup.h5ad")


def test_reading_options_that_do_not_apply_are_said_to_be_ignored(data_dir, formats_dir):
    """--bin-um / --bin-from on a slide that is not binned, --pitch-um on Xenium bins: a warning each,
    never a silent no-op."""
    import warnings as _w

    h5ad = data_dir / "st_breast_cancer_layer2.h5ad"
    with _w.catch_warnings(record=True) as seen:
        _w.simplefilter("always")
        read_slide(h5ad, bin_um=20, counts_from="transcripts")
        read_slide(formats_dir / "xenium_breast_small", pitch_um=100, bin_um=100)
    said = [str(w.message) for w in seen]
    assert any("bin size applies to Xenium" in m for m in said)
    assert any("--bin-from applies to Xenium and SpatialData cells only; ignored" in m for m in said)
    assert any("--pitch-um ignored" in m and "xenium_breast_small" in m for m in said)


def test_a_spot_far_from_every_other_is_said_to_be_an_outlier(data_dir, tmp_path):
    """One spot moved to row 5000 of a 30-row slide makes a grid that fits in memory (not refused) but is
    surely a typo: a warning names it; the real slides (detached fragments included) say nothing."""
    import warnings as _w

    src = anndata.read_h5ad(data_dir / "st_breast_cancer_layer2.h5ad")
    with _w.catch_warnings():
        _w.simplefilter("error")  # the real slides: no such warning
        for name in ("st_breast_cancer_layer2", "her2st_B4", "visium_mouse_brain_dg"):
            read_slide(data_dir / f"{name}.h5ad")
    moved = src.copy()
    rows = moved.obs["array_row"].to_numpy().copy()
    rows[0] = 5000
    moved.obs["array_row"] = rows
    if "spatial" in moved.obsm:
        del moved.obsm["spatial"]
    path = tmp_path / "moved.h5ad"
    moved.write_h5ad(path)
    with pytest.warns(UserWarning, match=r"1 spot\(s\) more than 20 lattice steps from any other, at .*\(5000, "):
        slide = read_slide(path)
    assert slide.n_spots == src.n_obs
