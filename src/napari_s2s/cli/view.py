"""``napari-s2s view [PATH | --sample] [--screenshot OUT.png]``: napari with the slide and the S2S widget."""

from __future__ import annotations

import importlib.util
import os
import sys

from ..core.checks import check_output_path
from ..core.errors import SlideError
from . import add_slide_argument, commit, load_slide_from_args

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


def _parse_size(text: str) -> tuple[int, int]:
    """``"1600x1000"`` -> ``(1600, 1000)``; anything else is a one-line error."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise SlideError(None, f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 1600x1000") from None
    if not (100 <= w <= 10000 and 100 <= h <= 10000):
        raise SlideError(None, f"--size {text!r}: width and height must be 100-10000 pixels")
    return w, h


def no_display() -> bool:
    """Whether this is a Linux session with no screen to open a window on (no X or Wayland display and
    no Qt platform chosen): Qt would print a screenful and abort."""
    env = os.environ
    return sys.platform.startswith("linux") and not any(
        env.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    )


#: Image formats ``--screenshot`` writes (Qt's writers, by suffix).
SCREENSHOT_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def run(args) -> int:
    if not qt_available():
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    if no_display():
        raise SlideError(None, "no display to open napari on; on a machine without a screen run it under xvfb-run")
    size = _parse_size(args.size)
    out = None
    if args.screenshot is not None:  # same rule as every output: the folder must exist and be writable
        out = check_output_path(args.screenshot, inputs=[args.path], option="--screenshot")
        if out.suffix.lower() not in SCREENSHOT_SUFFIXES:
            raise SlideError(out, f"--screenshot: name an image file ({', '.join(SCREENSHOT_SUFFIXES)})")
    slide = load_slide_from_args(args) if (args.path or args.sample) else None  # bad input: exit 2 before Qt
    commit()  # from here on, warnings print as they come (the viewer runs for long)

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
    w, h = size
    viewer.window.resize(w, h)
    from qtpy.QtWidgets import QApplication

    for _ in range(5):
        QApplication.processEvents()
    viewer.reset_view()
    QApplication.processEvents()
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    viewer.close()
    print(out)
    return 0
