"""``napari-s2s view [PATH | --sample] [--screenshot OUT.png]``: napari with the slide and the S2S widget."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from . import add_slide_argument, load_slide_from_args

#: Qt bindings napari can use, in qtpy's order of preference.
QT_BINDINGS = ("PyQt5", "PySide2", "PyQt6", "PySide6")

INSTALL_HINT = 'napari-s2s: error: no Qt binding is installed; install one with: pip install "napari-s2s[all]"'


def add_parser(sub):
    p = sub.add_parser("view", help="open napari with the slide and the S2S-ST dock widget")
    add_slide_argument(p)
    p.add_argument(
        "--screenshot",
        metavar="OUT.png",
        default=None,
        help="save a screenshot of the window and exit (works under xvfb-run)",
    )
    p.add_argument("--size", default="1600x1000", help="window size WxH for --screenshot (default 1600x1000)")
    return p


def qt_available() -> bool:
    """Whether any Qt binding napari can use is importable."""
    return any(importlib.util.find_spec(name) is not None for name in QT_BINDINGS)


def run(args) -> int:
    if not qt_available():
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    slide = load_slide_from_args(args) if (args.path or args.sample) else None  # bad input: exit 2 before Qt

    import napari

    from ..gui.layers import slide_layers

    viewer = napari.Viewer(title="napari-s2s", show=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-s2s", "S2S-ST imputation")
    if slide is not None:
        for data, kwargs, _ in slide_layers(slide):
            viewer.add_image(data, **kwargs)
    if args.screenshot is None:
        napari.run()
        return 0
    w, h = (int(v) for v in args.size.lower().split("x"))
    viewer.window.resize(w, h)
    from qtpy.QtWidgets import QApplication

    for _ in range(5):
        QApplication.processEvents()
    viewer.reset_view()
    QApplication.processEvents()
    out = Path(args.screenshot)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    viewer.close()
    print(out)
    return 0
