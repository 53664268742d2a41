"""`napari-s2s info` on real slides and on bad input (exit code 2, one line, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from napari_s2s.cli import main

KEYS = {
    "path",
    "library_id",
    "spots_total",
    "spots_in_tissue",
    "genes",
    "lattice",
    "grid_shape",
    "images",
    "um_per_px",
    "pitch_um",
}


def test_info_json_visium_folder(data_dir, capsys):
    assert main(["info", str(data_dir / "visium_mouse_brain"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert KEYS <= set(info)
    assert info["spots_total"] == 4992 and info["spots_in_tissue"] == 2702
    assert info["lattice"] == "hex" and info["images"] == {"lowres": [600, 576]}
    assert info["pitch_um"] == 100.0 and info["um_per_px"] == pytest.approx(0.7267, abs=1e-3)
    assert info["grid_shape"] == [74, 97]


def test_info_json_grid_only(data_dir, capsys):
    assert main(["info", str(data_dir / "st_breast_cancer_layer2.h5ad"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["lattice"] == "square" and info["images"] == {} and info["um_per_px"] is None


def test_info_pitch_override(data_dir, capsys):
    assert main(["info", str(data_dir / "st_breast_cancer_layer2.h5ad"), "--json", "--pitch-um", "200"]) == 0
    assert json.loads(capsys.readouterr().out)["pitch_um"] == 200.0


def test_info_sample_text(capsys):
    assert main(["info", "--sample"]) == 0
    out = capsys.readouterr().out
    assert "lattice" in out and "hex" in out


def test_info_bad_input_subprocess(tmp_path):
    bad = tmp_path / "corrupt.h5ad"
    bad.write_bytes(b"not hdf5")
    r = subprocess.run([sys.executable, "-m", "napari_s2s.cli", "info", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in r.stderr


def test_info_missing_path(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
