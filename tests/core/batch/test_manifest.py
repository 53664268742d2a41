"""manifest.csv: one row per input, in input order, rewritten atomically, readable by everyone."""

from __future__ import annotations

import os
import stat

import pytest

from napari_s2s.core.batch.manifest import COLUMNS, Manifest, read_manifest


def test_rows_in_input_order_rewritten_after_each(tmp_path):
    m = Manifest(tmp_path / "manifest.csv", order=["/a.h5ad", "/b.h5ad", "/c.h5ad"])
    m.add({"path": "/c.h5ad", "status": "failed", "error": "/c.h5ad: not an HDF5 file\n(details)"})
    assert [r["path"] for r in read_manifest(m.path)] == ["/c.h5ad"]  # on disk after the first row
    m.add(
        {
            "path": "/a.h5ad",
            "status": "done",
            "output": "/o/a_s2s.h5ad",
            "seconds": 12.3456,
            "genes": ["ERBB2", "GRB7"],
            "device": "cpu",
        }
    )
    rows = read_manifest(m.path)
    assert list(rows[0]) == list(COLUMNS)
    assert [r["path"] for r in rows] == ["/a.h5ad", "/c.h5ad"]
    assert rows[0] == {
        "path": "/a.h5ad",
        "status": "done",
        "output": "/o/a_s2s.h5ad",
        "seconds": "12.35",
        "genes": "ERBB2;GRB7",
        "device": "cpu",
        "error": "",
    }
    assert rows[1]["error"] == "/c.h5ad: not an HDF5 file (details)"  # one line
    assert m.counts() == {"done": 1, "skipped": 0, "failed": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.csv"]  # no temporary file left


def test_mode_follows_the_umask_and_bad_status_refused(tmp_path):
    old = os.umask(0o022)
    try:
        m = Manifest(tmp_path / "manifest.csv")
        m.add({"path": "/a.h5ad", "status": "skipped"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(m.path.stat().st_mode) == 0o644
    with pytest.raises(ValueError, match="status"):
        m.add({"path": "/a.h5ad", "status": "running"})
