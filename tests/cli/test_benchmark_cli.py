"""``napari-s2s benchmark``: JSON schema, Markdown table, plot, skips and exit codes."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import pytest

from napari_s2s.cli import main


def test_benchmark_cli_writes_json_table_and_plot(data_dir, tmp_path, capsys):
    out = tmp_path / "sub" / "r.json"
    out.parent.mkdir()  # output folders are never created (the same rule as impute --out)
    png = tmp_path / "r.png"
    rc = main([
        "benchmark", str(data_dir / "README.md"), str(data_dir / "her2st_C2.h5ad"),
        str(data_dir / "st_mouse_olfactory_bulb.h5ad"), "--json", str(out), "--plot", str(png),
        "--methods", "nearest,linear,gaussian", "--genes", "top:4", "--seed", "3",
    ])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    res = json.loads(out.read_text())
    assert res["seed"] == 3 and isinstance(res["version"], str)
    assert [s["name"] for s in res["slides"]] == ["her2st_C2", "st_mouse_olfactory_bulb"]
    for s in res["slides"]:
        assert set(s) >= {"name", "path", "spots", "measured", "genes", "methods"}
        assert list(s["methods"]) == ["nearest", "linear", "gaussian"] and len(s["genes"]) == 4
        for m in s["methods"].values():
            assert set(m) >= {"pcc_median", "rmse_median", "mae_median", "ssim_median", "seconds", "per_gene"}
            assert set(m["per_gene"]) == set(s["genes"])
    # Markdown table on stdout: header, one row per slide x method, and the summary
    assert "| slide | method | PCC | RMSE | MAE | SSIM | seconds |" in cap.out
    assert cap.out.count("| st_mouse_olfactory_bulb |") == 3
    assert "Mean over slides" in cap.out
    assert "README.md" in cap.err and "not a slide" in cap.err  # skipped with a warning
    img = mpimg.imread(png)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200


def test_benchmark_cli_explicit_genes(data_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["benchmark", str(data_dir / "her2st_C2.h5ad"), "--json", str(out),
               "--methods", "linear", "--genes", "ERBB2,GRB7", "--quiet"])
    assert rc == 0
    assert json.loads(out.read_text())["slides"][0]["genes"] == ["ERBB2", "GRB7"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--methods", "nearest,bogus"], "unknown method"),
        (["--genes", "top:x"], "top:N"),
        (["--genes", "NOT_A_GENE"], "no slide could be benchmarked"),
    ],
)
def test_benchmark_cli_bad_arguments_exit_2(data_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "r.json"
    rc = main(["benchmark", str(data_dir / "her2st_C2.h5ad"), "--json", str(out), "--quiet", *extra])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_benchmark_cli_no_slide_exit_2(data_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["benchmark", str(data_dir / "README.md"), str(tmp_path / "missing.h5ad"), "--json", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no slide could be benchmarked" in err and "missing.h5ad" in err
    assert not out.exists()
