"""Xenium output folders: cells or transcripts binned in square bins, on the real files of
``../shared/data/formats`` and variants derived from them in ``tmp_path``."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import writable_copy

from napari_s2s.core.data.io import is_slide_path, read_slide
from napari_s2s.core.errors import SlideError


@pytest.fixture
def small(formats_dir):
    return formats_dir / "xenium_breast_small"


@pytest.fixture
def crop1(formats_dir):
    return formats_dir / "xenium_mouse_brain_crops" / "sample1"


def _matrix_total(folder) -> float:
    with h5py.File(folder / "cell_feature_matrix.h5") as f:
        return float(f["matrix/data"][:].sum())


def test_cells_binned_at_their_parquet_centroids(small):
    s = read_slide(small, bin_um=5)
    assert s.geometry.technology == "xenium" and s.kind == "square"
    assert s.geometry.pitch_um == 5.0 and s.geometry.um_per_px == pytest.approx(0.2125)  # pixel_size
    assert s.metadata["counts_from"] == "cells" and s.metadata["n_cells"] == 6
    assert list(s.genes) == ["ABCC11", "ACTA2", "ACTG2", "ADAM9"]
    assert s.counts.sum() == _matrix_total(small)  # every count of the matrix lands in one bin
    cells = pd.read_parquet(small / "cells.parquet")
    # each bin centre (world, um) lies within half a bin of the centroids binned there
    world = s.spot_world()  # (y, x) um
    expect = {(int(np.floor(y / 5)), int(np.floor(x / 5))) for x, y in zip(cells.x_centroid, cells.y_centroid)}
    assert set(zip(s.array_row.tolist(), s.array_col.tolist())) == expect
    assert np.allclose(world, np.stack([(s.array_row + 0.5) * 5, (s.array_col + 0.5) * 5], 1))
    assert not sp.issparse(s.lognorm(["ACTA2"])) and sp.issparse(s.counts)


def test_default_bin_is_50_um_and_experiment_file_opens_its_folder(small):
    s = read_slide(small / "experiment.xenium")
    assert s.geometry.pitch_um == 50.0 and s.n_spots == 1
    assert s.name == "xenium_breast_small" and s.source == str(small)
    assert is_slide_path(small) and is_slide_path(small / "experiment.xenium")
    assert not is_slide_path(small.parent)  # the formats folder itself is no slide


def test_cells_csv_when_there_is_no_parquet(small, tmp_path):
    # the real cells.csv.gz lists other cells than cells.parquet (and a leading row-name column)
    d = writable_copy(small, tmp_path / "x")
    (d / "cells.parquet").unlink()
    s = read_slide(d, bin_um=5)
    csv = pd.read_csv(small / "cells.csv.gz")
    expect = {(int(np.floor(y / 5)), int(np.floor(x / 5))) for x, y in zip(csv.x_centroid, csv.y_centroid)}
    assert set(zip(s.array_row.tolist(), s.array_col.tolist())) == expect
    assert s.counts.sum() == _matrix_total(small)


def test_transcripts_with_qv_below_20_are_left_out(small):
    t = pd.read_parquet(small / "transcripts.parquet")
    s = read_slide(small, bin_um=1, counts_from="transcripts")
    assert s.metadata["counts_from"] == "transcripts"
    assert s.counts.sum() == int((t.qv >= 20).sum()) == 1


def test_transcript_crop_controls_left_out(crop1):
    # real quirks: a leading unnamed row-name column, no count matrix, control probes and codewords
    t = pd.read_csv(crop1 / "transcripts.csv")
    s = read_slide(crop1, bin_um=2)
    ctrl = t.feature_name.str.match(r"(NegControl|BLANK_|Unassigned|Deprecated|Intergenic|antisense_)")
    kept = t[(t.qv >= 20) & ~ctrl]
    assert s.metadata["counts_from"] == "transcripts"
    # the panel's genes (those seen only below qv 20 too, with no count), never a control
    assert sorted(s.genes) == sorted(t[~ctrl].feature_name.unique()) and not any("BLANK" in g for g in s.genes)
    assert s.counts.sum() == len(kept)
    # per gene and bin: the transcripts whose positions fall in that bin
    g = "Nrn1"
    sub = kept[kept.feature_name == g]
    want = (
        pd.Series(
            1,
            index=pd.MultiIndex.from_arrays(
                [np.floor(sub.y_location / 2).astype(int), np.floor(sub.x_location / 2).astype(int)]
            ),
        )
        .groupby(level=[0, 1])
        .sum()
    )
    col = s.counts[:, list(s.genes).index(g)].toarray().ravel()
    got = {(int(r), int(c)): v for r, c, v in zip(s.array_row, s.array_col, col) if v}
    assert got == {k: float(v) for k, v in want.items()}
    assert s.grid_extent() == (10, 10)  # a 20 x 20 um crop in 2 um bins


def test_transcripts_parquet_without_cells(small, tmp_path):
    d = writable_copy(small, tmp_path / "x")
    for f in ("cell_feature_matrix.h5", "cells.parquet", "cells.csv.gz"):
        (d / f).unlink()
    s = read_slide(d, bin_um=1)  # auto -> transcripts
    assert s.metadata["counts_from"] == "transcripts" and s.counts.sum() == 1


def test_morphology_image_aligned(small, tmp_path, monkeypatch):
    tifffile = pytest.importorskip("tifffile")
    d = writable_copy(small, tmp_path / "x")
    cells = pd.read_parquet(small / "cells.parquet")
    px = 0.2125
    cx, cy = cells.x_centroid[1] / px, cells.y_centroid[1] / px  # cell 2 in full-resolution pixels
    h, w = int(cy) + 400, int(cx) + 400
    img = np.zeros((h, w), np.uint16)
    img[int(cy) - 24 : int(cy) + 24, int(cx) - 24 : int(cx) + 24] = 4000  # a bright "nucleus" on cell 2
    with tifffile.TiffWriter(d / "morphology_focus.ome.tif", ome=True) as tif:
        tif.write(img, subifds=2, tile=(256, 256), metadata={"axes": "YX"})
        tif.write(img[::2, ::2], subfiletype=1, tile=(256, 256))
        tif.write(img[::4, ::4], subfiletype=1, tile=(256, 256))
    monkeypatch.setattr("napari_s2s.core.data.pyramid.MAX_IMAGE_SIDE", w // 3)  # forces the 1/4 level
    s = read_slide(d, bin_um=5)
    assert set(s.images) == {"morphology"} and s.scalefactors["morphology"] == pytest.approx(0.25, rel=0.01)
    im = s.images["morphology"]
    assert im.dtype == np.uint8 and im.shape[2] == 3 and im.shape[1] == pytest.approx(w / 4, abs=1)
    y, x = int(round(cy * 0.25)), int(round(cx * 0.25))
    assert im[y, x].mean() > 200 and im.mean() < 20  # the bright nucleus sits where the cell is
    assert s.metadata["image_label"].startswith("morphology")


def test_bin_size_must_be_positive(small):
    for bad in (0, -5, float("nan"), "abc"):
        with pytest.raises(SlideError, match="bin size"):
            read_slide(small, bin_um=bad)


def test_missing_experiment_file(small, tmp_path):
    d = writable_copy(small, tmp_path / "x")
    (d / "experiment.xenium").unlink()
    with pytest.raises(SlideError, match="experiment.xenium") as e:
        read_slide(d)
    assert "\n" not in str(e.value)


def test_missing_cells_table(small, tmp_path):
    d = writable_copy(small, tmp_path / "x")
    for f in ("cells.parquet", "cells.csv.gz"):
        (d / f).unlink()
    with pytest.raises(SlideError, match="cells.parquet: missing"):
        read_slide(d, counts_from="cells")
    (d / "transcripts.parquet").unlink()
    with pytest.raises(SlideError, match="missing"):  # auto: neither transcripts nor matrix + cells
        read_slide(d)


def test_unreadable_parquet_and_h5(small, tmp_path):
    d = writable_copy(small, tmp_path / "x")
    (d / "transcripts.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(SlideError, match=r"transcripts.parquet: unreadable parquet"):
        read_slide(d, counts_from="transcripts")
    (d / "cells.parquet").write_bytes(b"garbage")
    with pytest.raises(SlideError, match=r"cells.parquet: unreadable parquet"):
        read_slide(d)
    d2 = writable_copy(small, tmp_path / "y")
    (d2 / "cell_feature_matrix.h5").write_bytes(b"not hdf5")
    with pytest.raises(SlideError, match=r"cell_feature_matrix.h5: not a readable 10x HDF5"):
        read_slide(d2)


def test_bad_experiment_file(small, tmp_path):
    d = writable_copy(small, tmp_path / "x")
    meta = json.loads((small / "experiment.xenium").read_text())
    meta["pixel_size"] = 0
    (d / "experiment.xenium").write_text(json.dumps(meta))
    with pytest.raises(SlideError, match="pixel_size"):
        read_slide(d)
    (d / "experiment.xenium").write_text("{not json")
    with pytest.raises(SlideError, match="unreadable experiment"):
        read_slide(d)


def test_cells_of_the_matrix_missing_from_the_table(small, tmp_path):
    d = writable_copy(small, tmp_path / "x")
    cells = pd.read_parquet(small / "cells.parquet")
    cells.iloc[:4].to_parquet(d / "cells.parquet")
    with pytest.raises(SlideError, match="2 of 6 cells of the matrix are not in cells.parquet"):
        read_slide(d)
