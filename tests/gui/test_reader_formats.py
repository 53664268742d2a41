"""The npe2 reader and the dock's Open menu on Xenium, Visium HD and SpatialData inputs."""

from __future__ import annotations

import numpy as np
import pytest

from napari_s2s.gui._reader import napari_get_reader
from napari_s2s.gui.layers import s2s_meta


def test_reader_claims_the_new_formats(formats_dir, tmp_path):
    xen = formats_dir / "xenium_breast_small"
    assert napari_get_reader(str(xen)) is not None
    assert napari_get_reader(str(xen / "experiment.xenium")) is not None  # *.xenium opens its folder
    assert napari_get_reader(str(formats_dir / "xenium_mouse_brain_crops" / "sample1")) is not None
    assert napari_get_reader(str(formats_dir / "visium_hd_mouse_brain_layout")) is not None
    assert napari_get_reader(str(formats_dir / "xenium_breast_crop.zarr")) is not None
    assert napari_get_reader(str(formats_dir)) is None
    # a zarr store without a table is napari-spatialdata's, not ours
    store = tmp_path / "images_only.zarr"
    (store / "images" / "he").mkdir(parents=True)
    (store / ".zgroup").write_text('{"zarr_format": 2}')
    assert napari_get_reader(str(store)) is None


def test_manifest_patterns_leave_zarr_to_napari_spatialdata():
    from importlib.resources import files

    import yaml

    manifest = yaml.safe_load(files("napari_s2s").joinpath("napari.yaml").read_text())
    reader = manifest["contributions"]["readers"][0]
    assert reader["accepts_directories"] is True
    assert "*.xenium" in reader["filename_patterns"] and "*.zarr" not in reader["filename_patterns"]


@pytest.mark.gui
def test_open_xenium_folder_in_the_viewer(make_napari_viewer, formats_dir):
    viewer = make_napari_viewer()
    viewer.open(str(formats_dir / "xenium_mouse_brain_crops" / "sample1"), plugin="napari-s2s")
    kinds = {s2s_meta(layer)["kind"]: layer for layer in viewer.layers}
    assert set(kinds) == {"measured"}  # no count matrix, no image in the crop: transcripts binned
    meta = s2s_meta(kinds["measured"])
    assert meta["slide"].geometry.technology == "xenium" and meta["units"] == "um"


@pytest.mark.gui
def test_open_spatialdata_store_with_its_he(make_napari_viewer, formats_dir):
    viewer = make_napari_viewer()
    viewer.open(str(formats_dir / "xenium_breast_crop.zarr"), plugin="napari-s2s")
    kinds = {s2s_meta(layer)["kind"]: layer for layer in viewer.layers}
    assert set(kinds) == {"he", "measured"}
    assert kinds["he"].name.endswith("he_image") and kinds["he"].rgb
    assert np.isfinite(kinds["measured"].data).any()


@pytest.mark.gui
def test_open_menu_asks_the_bin_size(make_napari_viewer, formats_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("NAPARI_S2S_CONFIG_DIR", str(tmp_path / "cfg"))
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-s2s", "S2S-ST imputation")
    folder = formats_dir / "xenium_mouse_brain_crops" / "sample2"
    monkeypatch.setattr("napari_s2s.gui.open_menu.QFileDialog.getExistingDirectory", lambda *a, **k: str(folder))
    monkeypatch.setattr("napari_s2s.gui.open_menu.QInputDialog.getDouble", lambda *a, **k: (4.0, True))
    labels = [a.text() for a in widget.slide_box.open_button.menu().actions()]
    binned = next(a for a in widget.slide_box.open_button.menu().actions() if "Xenium" in a.text())
    assert any("Visium HD" in t for t in labels)
    binned.trigger()
    slide = widget.current_slide()
    assert slide is not None and slide.geometry.pitch_um == 4.0 and slide.metadata["bin_um"] == 4.0
    assert slide.grid_extent() == (5, 5)  # a 20 um crop in 4 um bins


@pytest.mark.gui
def test_result_opens_in_napari_spatialdata(make_napari_viewer, formats_dir, tmp_path, qtbot):
    """An imputed result written as SpatialData opens in napari-spatialdata (when installed) in the
    input's coordinate system, its tables linked to their shapes (checked by hand with 0.7.2)."""
    pytest.importorskip("napari_spatialdata")
    import time
    import warnings

    import spatialdata as sd
    from napari_spatialdata import Interactive
    from qtpy.QtWidgets import QApplication

    from napari_s2s.cli import main

    out = tmp_path / "r.zarr"
    assert (
        main(
            [
                "impute",
                str(formats_dir / "xenium_breast_crop.zarr"),
                "--bin-um",
                "5",
                "--out",
                str(out),
                "--genes",
                "top:2",
                "--max-steps",
                "2",
                "--no-natural",
                "--quiet",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inter = Interactive(sd.read_zarr(out), headless=True)
    viewer = inter._viewer
    for i, el in enumerate(("s2s_image", "s2s_dense")):
        inter.add_element(element=el, element_coordinate_system="global")
        t = time.time()
        while len(viewer.layers) < i + 1 and time.time() - t < 120:
            QApplication.processEvents()
            time.sleep(0.05)
    dense = viewer.layers["s2s_dense"]
    assert dense.metadata["table_names"] == ["s2s_imputed"] and dense.metadata["adata"].n_vars == 2
    # the crop's global frame (morphology pixels), where the input's own elements are
    (y0, x0), (y1, x1) = dense.extent.world
    assert 12_900 < y0 < y1 < 13_800 and 7_100 < x0 < x1 < 8_100
    viewer.close()
