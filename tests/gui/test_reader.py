"""The npe2 reader and sample data: slides open as aligned layers; bad input is a notification."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_s2s.gui._reader import napari_get_reader
from napari_s2s.gui.layers import s2s_meta


def test_reader_claims_only_slides(data_dir, tmp_path):
    assert napari_get_reader(str(data_dir / "her2st_C2.h5ad")) is not None
    assert napari_get_reader(str(data_dir / "visium_mouse_brain")) is not None
    assert napari_get_reader(str(data_dir / "README.md")) is None
    assert napari_get_reader(str(tmp_path)) is None  # an empty folder is no Space Ranger output
    assert napari_get_reader(str(tmp_path / "missing.tif")) is None


def test_manifest_validates():
    cmd = [sys.executable, "-m", "npe2", "validate", "napari-s2s", "--imports"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.gui
def test_open_space_ranger_folder(make_napari_viewer, data_dir):
    viewer = make_napari_viewer()
    viewer.open(str(data_dir / "visium_mouse_brain"), plugin="napari-s2s")
    kinds = {s2s_meta(layer)["kind"]: layer for layer in viewer.layers}
    assert set(kinds) == {"he", "measured"}
    he, genes = kinds["he"], kinds["measured"]
    assert he.rgb and genes.data.ndim == 3
    assert viewer.dims.axis_labels[0] == "gene"
    assert genes.data.shape[0] == len(s2s_meta(genes)["genes"]) == 4
    lo, hi = genes.contrast_limits
    assert lo == 0 and hi > 0
    assert s2s_meta(genes)["source"].endswith("visium_mouse_brain")


@pytest.mark.gui
def test_bad_slide_is_a_notification(make_napari_viewer, tmp_path, monkeypatch):
    bad = tmp_path / "corrupt.h5ad"
    bad.write_bytes(b"this is not an HDF5 file")
    seen = []
    monkeypatch.setattr("napari_s2s.gui._reader._notify_error", seen.append)
    viewer = make_napari_viewer()
    viewer.open(str(bad), plugin="napari-s2s")
    assert len(viewer.layers) == 0
    assert len(seen) == 1 and "corrupt.h5ad" in seen[0] and "\n" not in seen[0]


@pytest.mark.gui
def test_sample_data(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-s2s", "synthetic")
    kinds = {s2s_meta(layer)["kind"]: layer for layer in viewer.layers}
    assert set(kinds) == {"he", "measured"}
    genes = kinds["measured"]
    assert s2s_meta(genes)["genes"][0] == "TumorMarker"
    assert np.isfinite(genes.data).any()


@pytest.mark.gui
def test_zero_scale_factor_is_a_notification_not_a_crash(make_napari_viewer, data_dir, tmp_path, monkeypatch):
    """Issue 15, item 4: a scale factor of 0 used to reach the layers and raise ZeroDivisionError."""
    import anndata as ad

    a = ad.read_h5ad(data_dir / "her2st_C2.h5ad")
    lib = next(iter(a.uns["spatial"]))
    a.uns["spatial"][lib]["scalefactors"]["tissue_hires_scalef"] = 0.0
    bad = tmp_path / "zero_scale.h5ad"
    a.write_h5ad(bad)
    seen = []
    monkeypatch.setattr("napari_s2s.gui._reader._notify_error", seen.append)
    viewer = make_napari_viewer()
    viewer.open(str(bad), plugin="napari-s2s")
    assert len(viewer.layers) == 0
    assert len(seen) == 1 and "['tissue_hires_scalef'] must be a positive number" in seen[0]
