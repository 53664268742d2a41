"""Side-by-side grid mode on its own: two cells with the H&E under each, and back as it was."""

from __future__ import annotations

import numpy as np
import pytest

from napari_s2s.gui import side_by_side
from napari_s2s.gui.layers import s2s_meta, slide_layers

pytestmark = pytest.mark.gui


def test_enter_and_leave_restore_the_viewer(make_napari_viewer, synthetic_slide):
    viewer = make_napari_viewer()
    for data, kwargs, _ in slide_layers(synthetic_slide):
        viewer.add_image(data, **kwargs)
    he, measured = list(viewer.layers)
    imputed = viewer.add_image(measured.data * 2, name="imputed", affine=measured.affine)
    other = viewer.add_image(np.zeros((5, 5)), name="other")
    saved = side_by_side.enter(viewer, measured, imputed, he)
    grid = viewer.canvas.grid
    names = [layer.name for layer in viewer.layers]
    assert grid.enabled and tuple(grid.shape) == (1, 2) and grid.stride == 2
    copies = [layer for layer in viewer.layers if (s2s_meta(layer) or {}).get("kind") == "he_copy"]
    assert len(copies) == 1 and np.shares_memory(copies[0].data, he.data)  # a view, not a second image
    assert names[:4] == [he.name, measured.name, copies[0].name, "imputed"]
    pos = {layer.name: grid.position(i, list(viewer.layers)) for i, layer in enumerate(viewer.layers)}
    assert pos[he.name] == pos[measured.name] != pos[copies[0].name] == pos["imputed"]
    assert not other.visible and saved[other] is True
    side_by_side.leave(viewer, saved)
    assert not grid.enabled and other.visible
    assert not [layer for layer in viewer.layers if (s2s_meta(layer) or {}).get("kind") == "he_copy"]
