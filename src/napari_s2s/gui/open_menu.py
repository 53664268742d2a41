"""The Slide box's "Open…" menu: the kinds of input a user can open, each with its file dialog.

One action per input layout. A new layout is one more entry in :data:`OPENERS` (and, if it needs
options, a small dialog of its own here, like the bin size of a Xenium folder); the widget only
receives the path and the reader's options through ``open_path``.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtWidgets import QFileDialog, QInputDialog, QMenu, QWidget

#: What a picker returns: the chosen path ("" when cancelled) and keyword options for the reader.
Choice = tuple[str, dict]


def _pick_h5ad(parent: QWidget, start: str) -> Choice:
    path, _ = QFileDialog.getOpenFileName(parent, "Open a slide (.h5ad)", start, "AnnData (*.h5ad);;All files (*)")
    return path, {}


def _pick_space_ranger(parent: QWidget, start: str) -> Choice:
    return QFileDialog.getExistingDirectory(parent, "Open a Space Ranger or Visium HD outs/ folder", start), {}


#: The bin size last chosen in this session (the dialog's default next time).
_last_bin_um: list[float] = []


def _pick_binned(parent: QWidget, start: str) -> Choice:
    """A Xenium output folder or a SpatialData ``.zarr``, then the size of its square bins in um."""
    from ..core.data.binning import DEFAULT_BIN_UM

    path = QFileDialog.getExistingDirectory(parent, "Open a Xenium output folder or a SpatialData .zarr", start)
    if not path:
        return "", {}
    default = _last_bin_um[-1] if _last_bin_um else DEFAULT_BIN_UM
    bin_um, ok = QInputDialog.getDouble(parent, "Bin size", "Square bins of (um):", default, 0.5, 5000.0, 1)
    if not ok:
        return "", {}
    _last_bin_um[:] = [float(bin_um)]
    return path, {"bin_um": float(bin_um)}


#: Menu entries: label -> function ``(parent, start folder) -> (chosen path or "", reader options)``.
OPENERS: dict[str, Callable[[QWidget, str], Choice]] = {
    "AnnData file (.h5ad)…": _pick_h5ad,
    "Space Ranger / Visium HD folder (outs/)…": _pick_space_ranger,
    "Xenium folder or SpatialData (.zarr), binned…": _pick_binned,
}


def build_open_menu(parent: QWidget, open_path: Callable[..., None], start_dir: Callable[[], str]) -> QMenu:
    """The "Open…" menu: each entry asks for a path (starting in ``start_dir()``) and passes it, with
    the reader options its dialog asked for, to ``open_path(path, **options)``; a cancelled dialog
    opens nothing."""
    menu = QMenu(parent)
    for label, pick in OPENERS.items():
        menu.addAction(label, lambda pick=pick: _run(parent, pick, open_path, start_dir))
    return menu


def _run(parent, pick, open_path, start_dir) -> None:
    path, options = pick(parent, start_dir())
    if path:
        open_path(path, **options)
