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
    rc = main(
        [
            "benchmark",
            str(data_dir / "README.md"),
            str(data_dir / "her2st_C2.h5ad"),
            str(data_dir / "st_mouse_olfactory_bulb.h5ad"),
            "--json",
            str(out),
            "--plot",
            str(png),
            "--methods",
            "nearest,linear,gaussian",
            "--genes",
            "top:4",
            "--seed",
            "3",
        ]
    )
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
    rc = main(
        [
            "benchmark",
            str(data_dir / "her2st_C2.h5ad"),
            "--json",
            str(out),
            "--methods",
            "linear",
            "--genes",
            "ERBB2,GRB7",
            "--quiet",
        ]
    )
    assert rc == 0
    assert json.loads(out.read_text())["slides"][0]["genes"] == ["ERBB2", "GRB7"]


def test_a_method_asked_for_that_cannot_run_on_the_slide_is_named(data_dir, tmp_path, capsys):
    """--methods he_gaussian on a slide without an image: the table cannot just be silently empty."""
    out = tmp_path / "r.json"
    src = data_dir / "st_breast_cancer_layer2.h5ad"
    args = ["benchmark", str(src), "--json", str(out), "--methods", "linear,he_gaussian", "--genes", "top:2"]
    assert main(args + ["--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "napari-s2s: warning: st_breast_cancer_layer2: he_gaussian not run: the slide has no usable H&E image"
    ]
    rec = json.loads(out.read_text())["slides"][0]
    assert list(rec["methods"]) == ["linear"] and rec["not_applicable"] == ["he_gaussian"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--methods", "nearest,bogus"], "unknown method"),
        (["--genes", "top:x"], "top:N"),
        (["--genes", "8"], "top:8 takes the 8 most variable genes"),
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


def _without_seconds(res: dict) -> dict:
    for s in res["slides"]:
        for m in s["methods"].values():
            m.pop("seconds", None)
    return res


@pytest.mark.slow
def test_benchmark_cli_on_a_local_cluster_gives_the_serial_json(data_dir, tmp_path, capsys):
    paths = [
        str(data_dir / "README.md"),
        str(data_dir / "her2st_C2.h5ad"),
        str(data_dir / "st_mouse_olfactory_bulb.h5ad"),
    ]
    common = ["--methods", "nearest,linear,gaussian", "--genes", "top:4"]
    assert main(["benchmark", *paths, "--json", str(tmp_path / "serial.json"), "--seed", "1", "--quiet"] + common) == 0
    serial_table = capsys.readouterr().out
    # (slide x method x seed) tasks on 2 worker processes: one JSON per seed
    rc = main(["benchmark", *paths, "--json", str(tmp_path / "par.json"), "--workers", "2", "--seeds", "1,2"] + common)
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "local Dask cluster: 2 worker process(es)" in cap.err and "not a slide" in cap.err
    assert sorted(p.name for p in tmp_path.glob("par*.json")) == ["par_seed1.json", "par_seed2.json"]
    serial = json.loads((tmp_path / "serial.json").read_text())
    par1 = json.loads((tmp_path / "par_seed1.json").read_text())
    par2 = json.loads((tmp_path / "par_seed2.json").read_text())
    for s in par1["slides"]:
        assert list(s["methods"]) == ["nearest", "linear", "gaussian"]  # the serial order
    # the same record, metrics bit for bit (these methods are deterministic); only timings differ
    assert _without_seconds(par1) == _without_seconds(serial)
    assert par2["seed"] == 2 and _without_seconds(par2)["slides"] == _without_seconds(serial)["slides"]
    assert "## seed 1" in cap.out and "## seed 2" in cap.out
    rows = [
        line.split("|")[1:7] for line in cap.out.split("## seed 2")[0].splitlines() if line.startswith("| her2st_C2 |")
    ]
    assert rows == [line.split("|")[1:7] for line in serial_table.splitlines() if line.startswith("| her2st_C2 |")]


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_folder", "folder"),
        ("bad_seed", "--seeds: each seed must be an integer"),
        ("workers_zero", "--workers must be >= 1"),
        ("no_slide_on_a_cluster", "no slide could be benchmarked"),
    ],
)
def test_benchmark_parallel_options_keep_the_one_line_rules(data_dir, tmp_path, capsys, case, message):
    """--seeds/--workers outputs follow the one folder rule (checked before a cluster starts, never
    created), and the cluster's notes are held back: bad input is one line, exit 2."""
    src = str(data_dir / "her2st_C2.h5ad")
    out = tmp_path / "r.json"
    args = ["benchmark", src, "--json", str(out), "--methods", "nearest", "--seeds", "0,1", "--workers", "1"]
    if case == "missing_folder":
        args[3] = str(tmp_path / "no" / "r.json")
    elif case == "bad_seed":
        args[7] = "0,-1"
    elif case == "workers_zero":
        args[9] = "0"
    elif case == "no_slide_on_a_cluster":
        args[1] = str(data_dir / "README.md")
    rc = main(args)
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("napari-s2s: error: ") and message in err[0], err
    assert not (tmp_path / "no").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
