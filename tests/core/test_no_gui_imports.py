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


def _imports_of(path) -> set[str]:
    """Absolute module names a source file imports (relative imports resolved against its package)."""
    import ast
    from pathlib import Path

    src = Path(path)
    pkg = ".".join(
        src.relative_to(src.parents[len(src.parts) - src.parts.index("napari_s2s") - 1]).with_suffix("").parts[:-1]
    )
    out = set()
    for node in ast.walk(ast.parse(src.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = pkg.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_layers_import_one_way_data_smoothing_engine_methods():
    """core/data <- core/smoothing <- core/s2s <- core/methods: the engine never imports the methods
    (no import circle between the engine and the benchmark's methods), smoothing imports neither."""
    from pathlib import Path

    import napari_s2s.core as core

    root = Path(core.__file__).parent
    for sub, banned in (
        ("smoothing", ("napari_s2s.core.s2s", "napari_s2s.core.methods")),
        ("s2s", ("napari_s2s.core.methods",)),
        ("data", ("napari_s2s.core.methods", "napari_s2s.core.s2s", "napari_s2s.core.smoothing")),
    ):
        for f in sorted((root / sub).glob("*.py")):
            bad = sorted(i for i in _imports_of(f) if i.startswith(banned))
            assert not bad, f"{f.name} imports {bad}"
