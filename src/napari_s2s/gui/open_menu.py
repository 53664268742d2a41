"""The Slide box's "Open…" menu: the kinds of input a user can open, each with its file dialog.

One action per input layout. A new layout (say a Xenium folder with a bin size) is one more entry
in :data:`OPENERS` (and, if it needs options, a small dialog of its own here); the widget only
receives the path through ``open_path``.
"""

from __future__ import annotations

from typing import Callable

from qtpy.QtWidgets import QFileDialog, QMenu, QWidget


def _pick_h5ad(parent: QWidget, start: str) -> str:
    path, _ = QFileDialog.getOpenFileName(parent, "Open a slide (.h5ad)", start, "AnnData (*.h5ad);;All files (*)")
    return path


def _pick_space_ranger(parent: QWidget, start: str) -> str:
    return QFileDialog.getExistingDirectory(parent, "Open a Space Ranger outs/ folder", start)


#: Menu entries: label -> function ``(parent, start folder) -> chosen path or ""`` (cancelled).
OPENERS: dict[str, Callable[[QWidget, str], str]] = {
    "AnnData file (.h5ad)…": _pick_h5ad,
    "Space Ranger folder (outs/)…": _pick_space_ranger,
}


def build_open_menu(parent: QWidget, open_path: Callable[[str], None], start_dir: Callable[[], str]) -> QMenu:
    """The "Open…" menu: each entry asks for a path (starting in ``start_dir()``) and passes it to
    ``open_path``; a cancelled dialog opens nothing."""
    menu = QMenu(parent)
    for label, pick in OPENERS.items():
        menu.addAction(label, lambda pick=pick: _run(parent, pick, open_path, start_dir))
    return menu


def _run(parent, pick, open_path, start_dir) -> None:
    path = pick(parent, start_dir())
    if path:
        open_path(path)
