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


def test_the_dock_saves_how_the_slide_was_read(data_dir, tmp_path):
    """A Xenium section opened with another bin size (the Open menu asks for it): the saved result
    records it, so that a review session reads the slide the same way (a stand-in result: what is
    tested here is the writer's provenance, the result's own maps are tested in core)."""
    import anndata as ad
    import numpy as np

    from napari_s2s.core.data.io import read_slide
    from napari_s2s.core.review.files import slide_reading

    src = data_dir / "formats" / "xenium_breast_small"
    slide = read_slide(src, bin_um=5.0)
    assert slide.reading() == {"bin_um": 5.0, "counts_from": "cells"}
    again = read_slide(src, **slide_reading(slide.reading()))
    np.testing.assert_array_equal(again.array_row, slide.array_row)

    class Result:
        def to_anndata(self, slide, config, seconds, device=None):
            return ad.AnnData(np.zeros((2, 1), np.float32), uns={"s2s": {"source": str(slide.source)}})

    out = _writer.save_imputed({"kind": "imputed", "result": Result(), "slide": slide}, tmp_path / "r.h5ad")
    assert dict(ad.read_h5ad(out).uns["s2s"]["reading"]) == {"counts_from": "cells", "bin_um": 5.0}
    assert read_slide(data_dir / "her2st_C2.h5ad").reading() == {}
