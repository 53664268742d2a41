"""npe2 reader: Space Ranger ``outs/`` folders, ``.h5ad`` slides, Xenium and Visium HD output folders and
SpatialData ``.zarr`` stores holding a table -> H&E (or morphology image) + measured gene stack."""

from __future__ import annotations

from pathlib import Path

from ..core.data.io import is_slide_path, read_slide
from ..core.errors import SlideError
from .layers import slide_layers

#: What a reader returns when it accepted a path but has no layer to add (npe2's null sentinel).
NO_LAYERS = [(None,)]


def napari_get_reader(path):
    """Return :func:`read_slide_layers` for a path that looks like a slide, else ``None``."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        ok = is_slide_path(Path(path))
    except OSError:
        ok = False
    return read_slide_layers if ok else None


def read_slide_layers(path, bin_um: float | None = None, **_):
    """Read a slide and return its layers; bad input becomes a napari notification, not a crash.

    ``bin_um``: bin size of Xenium / SpatialData cells (the widget's Open menu asks for it; napari's
    File > Open uses the default).
    """
    if isinstance(path, (list, tuple)):
        path = path[0]
    try:
        slide = read_slide(path, bin_um=bin_um)
        return slide_layers(slide)
    except SlideError as exc:
        _notify_error(str(exc))
        return NO_LAYERS


def _notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(f"napari-s2s: {message}")
