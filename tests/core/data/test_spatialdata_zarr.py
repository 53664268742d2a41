"""SpatialData stores: the real Xenium crop of ``../shared/data/formats``, stores derived from it and
from the real Visium folder in ``tmp_path``, results written as SpatialData, and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from napari_s2s.core.data.io import is_slide_path, read_slide
from napari_s2s.core.errors import SlideError

sd = pytest.importorskip("spatialdata")


@pytest.fixture
def crop(formats_dir):
    return formats_dir / "xenium_breast_crop.zarr"


def _read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sd.read_zarr(path)


def _write(sdata, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sdata.write(path)
    return path


def test_crop_binned_from_its_transcripts(crop):
    # the table's gene names were lost (var index 0..312): the transcripts carry them
    s = read_slide(crop, bin_um=10)
    assert s.metadata["counts_from"] == "transcripts" and s.geometry.technology == "xenium"
    assert s.n_genes == 313 and s.genes[0] == "ABCC11"
    assert s.geometry.pitch_um == 10.0 and s.geometry.um_per_px == pytest.approx(0.2125)
    pts = pd.read_parquet(crop / "points/transcripts/points.parquet")
    ctrl = pts.feature_name.astype(str).str.match(r"(NegControl|BLANK_|Unassigned|Deprecated|Intergenic|antisense_)")
    assert s.counts.sum() == int(((pts.qv >= 20) & ~ctrl).sum())
    assert s.metadata["spatialdata"]["coordinate_system"] == "global"
    assert is_slide_path(crop)


def test_crop_he_image_aligned_with_the_nuclei(crop):
    """The H&E (rotated and mirrored against the morphology frame) is resampled into the slide's
    frame: the nuclei's centroids fall on dark (haematoxylin) pixels."""
    from spatialdata.transformations import get_transformation

    s = read_slide(crop, bin_um=10)
    assert set(s.images) == {"image"} and s.metadata["image_label"] == "he_image"
    img = s.images["image"].astype(float).mean(axis=2)
    f = s.scalefactors["image"]
    origin = np.asarray(s.metadata["spatialdata"]["origin"])
    sdata = _read(crop)
    nuc = sdata.shapes["nucleus_boundaries"]
    a = get_transformation(nuc, "global").to_affine_matrix(("x", "y"), ("x", "y"))
    c = np.stack([nuc.geometry.centroid.x, nuc.geometry.centroid.y], 1) @ a[:2, :2].T + a[:2, 2]
    ij = np.round((c - origin) * f).astype(int)
    h, w = img.shape
    ok = (ij[:, 0] >= 0) & (ij[:, 0] < w) & (ij[:, 1] >= 0) & (ij[:, 1] < h)
    inside = img[ij[ok, 1], ij[ok, 0]]
    tissue = img[img < 250]
    assert ok.sum() > 50
    assert np.median(inside) < np.percentile(tissue, 25)  # nuclei are the darkest quarter of the H&E


def test_crop_cells_need_gene_names(crop):
    with pytest.raises(SlideError, match="gene names were lost"):
        read_slide(crop, counts_from="cells")


def test_cells_binned_when_the_names_are_there(crop, tmp_path):
    sdata = _read(crop)
    cats = sdata.points["transcripts"]["feature_name"].compute().cat.categories  # the panel, controls included
    names = sorted(
        n
        for n in map(str, cats)
        if not n.startswith(("NegControl", "BLANK_", "Unassigned", "Deprecated", "Intergenic", "antisense_"))
    )
    table = sdata.tables["table"]
    table.var_names = names  # as a Xenium table written with its names
    sub = sd.SpatialData(shapes={"cell_boundaries": sdata.shapes["cell_boundaries"]}, tables={"table": table})
    out = _write(sub, tmp_path / "cells.zarr")
    s = read_slide(out, bin_um=20)
    assert s.metadata["counts_from"] == "cells" and s.metadata["n_cells"] == 122
    assert list(s.genes) == names
    assert s.counts.sum() == pytest.approx(float(table.X.sum()))
    assert s.geometry.um_per_px == pytest.approx(0.2125)


def test_store_without_a_table(crop, tmp_path):
    sdata = _read(crop)
    out = _write(sd.SpatialData(shapes={"cell_circles": sdata.shapes["cell_circles"]}), tmp_path / "notable.zarr")
    assert not is_slide_path(out)  # napari-spatialdata's to open, not ours
    with pytest.raises(SlideError, match="no table") as e:
        read_slide(out)
    assert str(out) in str(e.value) and "\n" not in str(e.value)


def test_without_spatialdata_says_how_to_install(crop, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_sd(name, *a, **k):
        if name == "spatialdata" or name.startswith("spatialdata."):
            raise ImportError("No module named 'spatialdata'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_sd)
    with pytest.raises(SlideError, match=r'pip install "napari-s2s\[spatialdata\]"'):
        read_slide(crop)


@pytest.fixture(scope="module")
def visium_store(tmp_path_factory, data_dir):
    """The real Visium folder as a SpatialData store (spatialdata-io's layout: circles in full-resolution
    pixels, a table with array coordinates, the lowres image scaled to them)."""
    import anndata as ad
    from spatialdata.models import Image2DModel, ShapesModel, TableModel
    from spatialdata.transformations import Identity, Scale

    s = read_slide(data_dir / "visium_mouse_brain")
    table = ad.AnnData(
        X=s.counts,
        obs=pd.DataFrame(
            {
                "array_row": s.array_row,
                "array_col": s.array_col,
                "in_tissue": s.in_tissue.astype(int),
                "region": pd.Categorical(["spots"] * s.n_spots),
                "spot_id": np.arange(s.n_spots),
            },
            index=s.barcodes,
        ),
        var=pd.DataFrame(index=s.genes),
    )
    table = TableModel.parse(table, region="spots", region_key="region", instance_key="spot_id")
    shapes = ShapesModel.parse(
        s.pixel_xy,
        geometry=0,
        radius=np.full(s.n_spots, s.spot_diameter_px / 2),
        index=np.arange(s.n_spots),
        transformations={"global": Identity()},
    )
    f = s.scalefactors["lowres"]
    img = Image2DModel.parse(
        np.moveaxis(s.images["lowres"], -1, 0),
        dims=("c", "y", "x"),
        transformations={"global": Scale([1 / f, 1 / f], axes=("x", "y"))},
    )
    out = tmp_path_factory.mktemp("sd") / "visium.zarr"
    return _write(sd.SpatialData(images={"lowres": img}, shapes={"spots": shapes}, tables={"table": table}), out), s


def test_lattice_table_reads_like_the_folder(visium_store):
    path, folder = visium_store
    s = read_slide(path)
    assert s.kind == "hex" and s.geometry.technology == "visium" and s.geometry.pitch_um == 100.0
    assert s.geometry.um_per_px == pytest.approx(folder.geometry.um_per_px, rel=1e-6)
    assert np.array_equal(s.array_row, folder.array_row) and (s.counts != folder.counts).nnz == 0
    assert set(s.images) == {"image"}
    # the image lands where the folder's does: same world position of a spot over the same pixel colour
    w_s = s.spot_world()[100]
    w_f = folder.spot_world()[100]
    origin = np.asarray(s.metadata["spatialdata"]["origin"])
    assert np.allclose(w_s + origin[::-1] * s.geometry.um_per_px, w_f, atol=1e-6)
    ps = np.round(s.pixel_xy[100] * s.scalefactors["image"]).astype(int)
    pf = np.round(folder.pixel_xy[100] * folder.scalefactors["lowres"]).astype(int)
    assert (
        np.abs(s.images["image"][ps[1], ps[0]].astype(int) - folder.images["lowres"][pf[1], pf[0]].astype(int)).max()
        < 40
    )
