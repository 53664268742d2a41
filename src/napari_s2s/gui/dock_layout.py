"""Where the dock's panels go in the napari window.

The main panel (slide, genes / settings, train, results) is the plugin's dock widget. Panels that
need room of their own, like the review table, go in dock widgets of their own beside it: on a short
window (a laptop's 768 px) tabified with the main panel, so that Train and the review table each get
the full height; on a tall one below it, both in view. A panel added later (e.g. a blinded reader
view) is one more :func:`add_panel` call.
"""

from __future__ import annotations

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QDockWidget, QWidget

#: Windows shorter than this (px) get the panels tabified with the main one, taller ones stacked.
TABIFY_BELOW_PX = 1000


def host_dock(widget: QWidget) -> QDockWidget | None:
    """The dock widget ``widget`` sits in (napari's wrapper of a plugin widget), or ``None``."""
    parent = widget.parent()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parent()
    return parent


def add_panel(viewer, main: QWidget, panel: QWidget, name: str, main_height: int | None = None) -> QDockWidget | None:
    """Dock ``panel`` beside the dock of ``main`` (tabified on a short window, below on a tall one,
    where ``main`` keeps ``main_height`` px, its content's height, when given).

    Returns the new dock widget; ``None`` when ``main`` is not docked in a napari window (then the
    caller keeps the panel in its own layout).
    """
    main_dock = host_dock(main)
    window = getattr(viewer, "window", None)
    if main_dock is None or window is None:
        return None
    short = main.window().height() < TABIFY_BELOW_PX
    window.add_dock_widget(panel, name=name, area="right", tabify=short, add_vertical_stretch=False)
    dock = host_dock(panel)
    if short:  # tabified: the main panel stays in front (napari raised the new tab)
        main_dock.raise_()
        QTimer.singleShot(0, main_dock.raise_)
    elif dock is not None:  # stacked: the main panel as tall as its content, the new one the rest
        QTimer.singleShot(0, lambda: _share_height(main, main_dock, dock, main_height))
    return dock


def tabify_beside(main: QWidget, dock) -> None:
    """On a short window, move ``dock`` (a dock napari added, e.g. another of the plugin's widgets) into a
    tab beside ``main``'s dock, in front; on a tall one leave it where napari put it."""
    dock = getattr(dock, "__wrapped__", dock)  # napari's proxy of it, in a plugin dock
    main_dock = host_dock(main)
    if main_dock is None or not isinstance(dock, QDockWidget) or dock is main_dock:
        return
    if main.window().height() >= TABIFY_BELOW_PX:
        return
    main.window().tabifyDockWidget(main_dock, dock)
    show_panel(dock)
    QTimer.singleShot(0, dock.raise_)


def _share_height(main: QWidget, main_dock: QDockWidget, dock: QDockWidget, main_height: int | None) -> None:
    try:
        total = main_dock.height() + dock.height()
        want = min((main_height or main.sizeHint().height()) + 56, int(0.72 * total))  # + 2 lines of a long message
        main.window().resizeDocks([main_dock, dock], [want, max(1, total - want)], Qt.Orientation.Vertical)
    except RuntimeError:  # closed meanwhile
        pass


def show_panel(dock: QDockWidget | None) -> None:
    """Bring a panel's dock to the front (its tab, when tabified)."""
    if dock is not None:
        dock.show()
        dock.raise_()


def remove_panel(viewer, panel: QWidget) -> None:
    """Take ``panel``'s dock out of the window (the main panel is closing)."""
    window = getattr(viewer, "window", None)
    if window is None:
        return
    try:
        window.remove_dock_widget(panel)
    except (RuntimeError, LookupError, AttributeError, ValueError):  # already gone with the window
        pass
