"""Visium HD bin folders (and ``outs/``): the real layout of ``../shared/data/formats``, variants and
bad inputs derived from it, and a modest generated slide in the same layout."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import writable_copy

from napari_s2s.core.data.io import is_slide_path, read_slide
from napari_s2s.core.errors import SlideError

BIN = "binned_outputs/square_002um"


@pytest.fixture
def layout(formats_dir):
    return formats_dir / "visium_hd_mouse_brain_layout"


def test_real_layout(layout):
    s = read_slide(layout)
    assert s.geometry.technology == "visium_hd" and s.kind == "square"
    assert s.n_spots == 10 and s.n_genes == 10 and s.n_spots_total == 10
    assert s.geometry.pitch_um == 2.0  # bin_size_um
    sf = json.loads((layout / BIN / "spatial/scalefactors_json.json").read_text())
    assert s.geometry.um_per_px == pytest.approx(sf["microns_per_pixel"], rel=0.01)
    assert set(s.images) == {"lowres"} and s.scalefactors["lowres"] == sf["tissue_lowres_scalef"]
    assert s.counts.sum() == 0 and not s.usable().any()  # the real 10 x 10 matrix is all zeros
    # barcodes s_002um_RRRRR_CCCCC-1 carry the array coordinates
    for b, r, c in zip(s.barcodes, s.array_row, s.array_col):
        assert b == f"s_002um_{r:05d}_{c:05d}-1"
    # micrometres: world distance between two bins = 2 um x their lattice distance
    w = s.spot_world()
    d_world = np.hypot(*(w[0] - w[1]))
    d_grid = np.hypot(s.array_row[0] - s.array_row[1], s.array_col[0] - s.array_col[1])
    assert d_world == pytest.approx(2.0 * d_grid, rel=0.01)


def test_bin_folder_outs_and_run_folder_agree(layout, tmp_path):
    a = read_slide(layout / BIN)
    b = read_slide(layout)
    run = tmp_path / "run"
    (run / "outs").mkdir(parents=True)
    shutil.copytree(layout / "binned_outputs", run / "outs" / "binned_outputs", copy_function=shutil.copyfile)
    c = read_slide(run)
    for s in (b, c):
        assert np.array_equal(s.barcodes, a.barcodes) and np.array_equal(s.array_row, a.array_row)
    assert c.library_id == "run" and c.name == "run"
    assert is_slide_path(layout) and is_slide_path(layout / BIN) and is_slide_path(run)


def test_mex_folder_equals_h5(layout, tmp_path):
    d = writable_copy(layout, tmp_path / "hd")
    (d / BIN / "filtered_feature_bc_matrix.h5").unlink()
    mex = read_slide(d)  # .tsv.gz files that are plain text, a .mtx.gz that is gzip
    h5 = read_slide(layout)
    assert list(mex.genes) == list(h5.genes) and np.array_equal(mex.barcodes, h5.barcodes)
    assert (mex.counts != h5.counts).nnz == 0


def test_bin_size_picks_the_folder(layout):
    assert read_slide(layout, bin_um=2).geometry.pitch_um == 2.0
    with pytest.raises(SlideError, match=r"no square_008um bin folder \(bin sizes here: 2 um\)"):
        read_slide(layout, bin_um=8)


def test_missing_positions(layout, tmp_path):
    d = writable_copy(layout, tmp_path / "hd")
    (d / BIN / "spatial/tissue_positions.parquet").unlink()
    with pytest.raises(SlideError, match=r"tissue_positions.parquet: missing") as e:
        read_slide(d)
    assert "\n" not in str(e.value)


def test_missing_matrix(layout, tmp_path):
    d = writable_copy(layout, tmp_path / "hd")
    (d / BIN / "filtered_feature_bc_matrix.h5").unlink()
    shutil.rmtree(d / BIN / "filtered_feature_bc_matrix")
    with pytest.raises(SlideError, match=r"filtered_feature_bc_matrix.h5: missing"):
        read_slide(d)


def test_unreadable_parquet_h5_and_scalefactors(layout, tmp_path):
    d = writable_copy(layout, tmp_path / "a")
    (d / BIN / "spatial/tissue_positions.parquet").write_bytes(b"PAR1 garbage PAR1")
    with pytest.raises(SlideError, match=r"tissue_positions.parquet: unreadable parquet"):
        read_slide(d)
    d = writable_copy(layout, tmp_path / "b")
    (d / BIN / "filtered_feature_bc_matrix.h5").write_bytes(b"not an hdf5 file")
    with pytest.raises(SlideError, match=r"filtered_feature_bc_matrix.h5: not a readable 10x HDF5"):
        read_slide(d)
    d = writable_copy(layout, tmp_path / "c")
    (d / BIN / "spatial/scalefactors_json.json").write_text("{oops")
    with pytest.raises(SlideError, match=r"scalefactors_json.json: unreadable"):
        read_slide(d)


def test_barcodes_missing_from_positions(layout, tmp_path):
    d = writable_copy(layout, tmp_path / "hd")
    f = d / BIN / "spatial/tissue_positions.parquet"
    pd.read_parquet(f).iloc[:7].to_parquet(f)
    with pytest.raises(SlideError, match="3 barcode"):
        read_slide(d)


# ---------------------------------------------------------------------- a generated slide
@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    from napari_s2s.core.data.synthetic_hd import write_visium_hd

    run = tmp_path_factory.mktemp("hd") / "run"
    write_visium_hd(run, n_bins=20_000, bin_um=8, n_genes=3_000, density=0.01, area_um=2_000, hires_side=1_200)
    return run


def test_generated_slide_in_the_real_layout(generated):
    s = read_slide(generated)  # outs/ above binned_outputs: 8 um by default
    assert s.n_spots == 20_000 and s.n_genes == 3_000 and s.geometry.technology == "visium_hd"
    assert s.n_spots_total == 250 * 250  # every bin of the 2 mm capture area is in the positions table
    assert 0.005 <= s.counts.nnz / (s.n_spots * s.n_genes) <= 0.02
    assert s.geometry.pitch_um == 8.0 and s.geometry.um_per_px == pytest.approx(0.2738, rel=1e-3)
    assert s.geometry.residual_pitch < 1e-6 and set(s.images) == {"hires", "lowres"}
    with h5py.File(generated / "outs/binned_outputs/square_008um/filtered_feature_bc_matrix.h5") as f:
        assert f["matrix/indices"].dtype == np.int64 and f["matrix/data"].compression == "gzip"


def test_opening_never_densifies_the_counts(generated, monkeypatch):
    """Reading, the top genes and 10 genes' layers make no dense array of all spots x all genes."""
    from napari_s2s.gui.layers import slide_layers

    biggest = []
    for cls in (sp.csr_matrix, sp.csc_matrix, sp.coo_matrix):
        orig = cls.toarray

        def spy(self, *a, _orig=orig, **k):
            biggest.append(self.shape[0] * self.shape[1])
            return _orig(self, *a, **k)

        monkeypatch.setattr(cls, "toarray", spy)
    s = read_slide(generated)
    layers = slide_layers(s, genes=s.top_variable_genes(10))
    assert layers[-1][0].shape[0] == 10
    assert max(biggest) <= s.n_spots * 10  # at most the picked genes, densely
    assert sp.isspmatrix_csr(s.counts)
