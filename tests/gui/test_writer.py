"""The npe2 writer refuses what is not an imputed result, with a notification instead of a crash."""

from __future__ import annotations

from napari_s2s.gui import _writer
from napari_s2s.gui.layers import slide_layers


def test_writer_refuses_measured_layers(synthetic_slide, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("napari.utils.notifications.show_error", seen.append)
    data, kwargs, _ = slide_layers(synthetic_slide, genes=["TumorMarker"])[1]
    out = tmp_path / "x.h5ad"
    assert _writer.write_imputed(str(out), data, kwargs) == []
    assert not out.exists()
    assert len(seen) == 1 and "imputed" in seen[0]
    assert _writer.write_imputed(str(out), data, {}) == []  # a layer from another plugin


def test_writer_never_overwrites_the_input(read_shared, monkeypatch):
    slide = read_shared("her2st_C2")
    seen = []
    monkeypatch.setattr("napari.utils.notifications.show_error", seen.append)
    entry = {"kind": "imputed", "result": object(), "slide": slide}
    meta = {"metadata": {"napari_s2s": entry}}
    assert _writer.write_imputed(slide.source, None, meta) == []
    assert "overwrite" in seen[-1]
