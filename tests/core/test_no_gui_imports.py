"""The core never imports napari or Qt (design rule: it runs headless, e.g. in `napari-s2s impute`)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import importlib, pkgutil, sys
import napari_s2s.core as core
names = [m.name for m in pkgutil.walk_packages(core.__path__, core.__name__ + ".")]
for name in names:
    importlib.import_module(name)
gui = sorted(m for m in sys.modules if m.split(".")[0] in
             ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy", "magicgui", "superqt"))
print(len(names), gui)
"""


def test_every_core_module_imports_without_napari_or_qt():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    n, gui = out.stdout.strip().split(" ", 1)
    assert int(n) >= 20  # every module of core/ was imported
    assert gui == "[]", f"core pulled in GUI packages: {gui}"
