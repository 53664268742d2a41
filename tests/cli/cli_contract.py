"""Helpers for tests of the CLI contract on bad input: derived slides, digests, and the contract itself.

The contract (docs/design.md, "CLI contract"): exit 0, or exit 2 with exactly one stderr line naming the
problem; never a traceback; the input unchanged; no output (or temporary file) left behind on failure.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from napari_s2s.cli import main

#: Options that make ``impute`` cheap in tests (one step, one thread, no natural images, one pass).
FAST = ["--max-steps", "1", "--threads", "1", "--no-natural", "--no-tta", "--device", "cpu"]


def digest(path: Path) -> str:
    """SHA-256 over a file, or over a folder's file names and contents (symlinks not followed)."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir() and not path.is_symlink():
        for f in sorted(path.rglob("*")):
            h.update(str(f.relative_to(path)).encode("utf-8", "surrogateescape"))
            if f.is_file() and not f.is_symlink():
                h.update(f.read_bytes())
    elif path.is_file():
        h.update(path.read_bytes())
    return h.hexdigest()


def listing(folder: Path) -> set[str]:
    """Relative paths of everything under ``folder`` (to see what a command left behind)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def run(argv: list[str], capsys) -> tuple[int, str, list[str]]:
    """``main(argv)`` in-process: ``(exit code, stdout, stderr lines)``."""
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err.splitlines()


def run_subprocess(argv: list[str], **kw) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter (what users run), with Python's default warning filters."""
    if "stdout" not in kw and "stderr" not in kw:
        kw["capture_output"] = True
    return subprocess.run([sys.executable, "-m", "napari_s2s.cli", *map(str, argv)], text=True, **kw)


def assert_contract(rc: int, err: list[str]) -> None:
    """Exit 0, or exit 2 with exactly one stderr line; never a traceback."""
    text = "\n".join(err)
    assert "Traceback" not in text and "Exception ignored" not in text, text
    assert rc in (0, 2), f"exit {rc}: {text}"
    if rc == 2:
        assert len(err) == 1, f"{len(err)} stderr lines on exit 2:\n{text}"
        assert err[0].startswith("napari-s2s"), err[0]


def assert_bad_input(rc: int, err: list[str], *needles: str) -> str:
    """Exit 2, one line holding every needle (case-insensitive); returns the line."""
    assert_contract(rc, err)
    assert rc == 2, f"expected exit 2, got {rc}: {err}"
    line = err[0]
    for n in needles:
        assert n.lower() in line.lower(), f"{n!r} not in {line!r}"
    return line


def small_adata(data_dir: Path, name: str = "her2st_C2.h5ad", n_genes: int = 300, shrink: int = 10):
    """A real shared slide cut to its ``n_genes`` most detected genes, its images shrunk ``shrink`` times
    (scale factors adjusted to match): fast to read, train and write, still consistent."""
    import anndata as ad

    a = ad.read_h5ad(data_dir / name)
    x = a.X.tocsc() if hasattr(a.X, "tocsc") else np.asarray(a.X)
    detected = np.asarray((x > 0).sum(axis=0)).ravel()
    keep = np.sort(np.argsort(-detected, kind="stable")[:n_genes])
    a = a[:, keep].copy()
    for lib in a.uns.get("spatial", {}).values():
        for key, img in lib.get("images", {}).items():
            lib["images"][key] = np.ascontiguousarray(img[::shrink, ::shrink])
            lib["scalefactors"][f"tissue_{key}_scalef"] *= 1.0 / shrink
    return a


def copy_visium(data_dir: Path, dst: Path) -> Path:
    """A writable copy of the shared Space Ranger folder."""
    shutil.copytree(data_dir / "visium_mouse_brain", dst)
    for f in [dst, *dst.rglob("*")]:
        f.chmod(0o755 if f.is_dir() else 0o644)
    return dst
