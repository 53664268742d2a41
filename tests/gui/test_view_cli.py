"""``napari-s2s view``: screenshot of the window under Xvfb, one-line errors, missing Qt binding."""

from __future__ import annotations

import pytest

from napari_s2s.cli import main


def test_view_without_qt_binding_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setattr("napari_s2s.cli.view.qt_available", lambda: False)
    assert main(["view", "--sample"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'pip install "napari-s2s[all]"' in err


def test_view_without_a_display_says_how_to_run_it(monkeypatch, capsys):
    """No screen (an ssh session, a cluster node): one line naming xvfb-run, not Qt's screenful and an abort."""
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert main(["view", "--sample"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no display" in err[0] and "xvfb-run" in err[0]


def test_view_screenshot_names_an_image_file(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("napari_s2s.cli.view.no_display", lambda: False)
    assert main(["view", "--sample", "--screenshot", str(tmp_path / "v.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "name an image file" in err[0] and not (tmp_path / "v.txt").exists()


def test_view_bad_path_is_one_line(tmp_path, capsys):
    assert main(["view", str(tmp_path / "missing.h5ad")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing.h5ad" in err


@pytest.mark.gui
def test_view_screenshot_of_a_real_slide(qapp, data_dir, tmp_path, monkeypatch):
    from skimage.io import imread

    monkeypatch.setenv("NAPARI_S2S_CONFIG_DIR", str(tmp_path / "cfg"))
    out = tmp_path / "shot.png"
    assert main(["view", str(data_dir / "her2st_C2.h5ad"), "--screenshot", str(out), "--size", "1400x900"]) == 0
    img = imread(out)
    assert img.shape[1] >= 1300 and img.shape[0] >= 800
    rgb = img[..., :3].astype(float)
    # the H&E (bright, pinkish) and gene colours are on the canvas, not a black frame
    assert rgb.mean() > 40 and rgb.std() > 20


@pytest.mark.gui
def test_view_prints_no_third_party_deprecations(qapp, tmp_path):
    """napari's internals raise pydantic deprecations; a user of ``napari-s2s view`` sees none."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NAPARI_S2S_CONFIG_DIR": str(tmp_path / "cfg")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_s2s.cli",
            "view",
            "--sample",
            "--screenshot",
            str(tmp_path / "s.png"),
            "--size",
            "800x600",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "deprecated" not in out.stderr.lower() and "pydantic" not in out.stderr.lower(), out.stderr
