"""``napari-s2s batch`` on a real local Dask cluster (2 worker processes) with the shared slides.

Training is step-limited (``--max-steps``) so that a slide imputed by the batch can be compared bit for bit
with ``napari-s2s impute`` run alone with the same options.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import dask
import numpy as np
import pytest
from conftest import slide_path

from napari_s2s.cli import main
from napari_s2s.core.batch.manifest import COLUMNS, read_manifest
from napari_s2s.core.jobs import ImputeSettings, result_matches

pytestmark = pytest.mark.slow

#: Short, deterministic training (a step limit, not a time budget), no natural images, one pass.
OPTS = ["--genes", "top:2", "--max-steps", "2", "--no-natural", "--no-tta", "--seed", "2", "--device", "cpu"]
DIE_ONCE = Path(__file__).with_name("_die_once.py")


def _rows(out_dir: Path) -> dict[str, dict]:
    rows = read_manifest(out_dir / "manifest.csv")
    return {Path(r["path"]).name: r for r in rows}


def _cohort(tmp_path: Path, data_dir: Path, names=("her2st_C2", "st_breast_cancer_layer2")) -> Path:
    """A folder of slides (links to the shared files, which stay untouched) and a note that is not a slide."""
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    for name in names:
        src = slide_path(data_dir, name)
        (cohort / src.name).symlink_to(src)
    (cohort / "notes.txt").write_text("not a slide\n")
    return cohort


def test_batch_equals_impute_fails_corrupt_slide_and_resumes(tmp_path, data_dir, capsys):
    cohort = _cohort(tmp_path, data_dir)
    (cohort / "broken.h5ad").write_bytes(b"this is not an HDF5 file\n" * 40)
    out = tmp_path / "out"
    rc = main(["batch", str(cohort), "--out-dir", str(out), "--workers", "2"] + OPTS)
    err = capsys.readouterr().err
    assert rc == 1, err  # some slides failed, the others are done
    rows = _rows(out)
    assert list(read_manifest(out / "manifest.csv")[0]) == list(COLUMNS)
    assert {k: r["status"] for k, r in rows.items()} == {
        "broken.h5ad": "failed",
        "her2st_C2.h5ad": "done",
        "st_breast_cancer_layer2.h5ad": "done",
    }
    bad = rows["broken.h5ad"]
    assert "broken.h5ad" in bad["error"] and "\n" not in bad["error"] and bad["output"] == ""
    assert "local Dask cluster: 2 worker process(es)" in err
    assert "done her2st_C2.h5ad" in err and "failed broken.h5ad" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == [
        "her2st_C2_s2s.h5ad",
        "manifest.csv",
        "st_breast_cancer_layer2_s2s.h5ad",
    ]  # nothing half-written

    # the batch's result is exactly what `napari-s2s impute` writes alone with the same options
    alone = tmp_path / "alone.h5ad"
    src = slide_path(data_dir, "her2st_C2")
    assert main(["impute", str(src), "--out", str(alone), "--threads", "1", "--quiet"] + OPTS) == 0
    a, b = ad.read_h5ad(alone), ad.read_h5ad(out / "her2st_C2_s2s.h5ad")
    assert list(a.var_names) == list(b.var_names) == rows["her2st_C2.h5ad"]["genes"].split(";")
    assert np.array_equal(np.asarray(a.X), np.asarray(b.X))
    assert np.array_equal(a.layers["s2s_model"], b.layers["s2s_model"])
    assert a.obs.equals(b.obs) and np.array_equal(a.obsm["spatial"], b.obsm["spatial"])
    pa, pb = a.uns["s2s"], b.uns["s2s"]
    assert set(pa) == set(pb)
    assert {k: str(v) for k, v in pa["config"].items()} == {k: str(v) for k, v in pb["config"].items()}
    assert int(pb["seed"]) == 2 and pb["genes_requested"] == "top:2" and pb["device"] == "cpu"
    assert rows["her2st_C2.h5ad"]["device"] == "cpu" and float(rows["her2st_C2.h5ad"]["seconds"]) > 0

    # the same command again: the corrupt slide fails again, the finished ones are skipped untouched
    (cohort / "broken.h5ad").unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*_s2s.h5ad")}
    rc = main(["batch", str(cohort), "--out-dir", str(out), "--workers", "2"] + OPTS)
    err = capsys.readouterr().err
    assert rc == 0, err
    assert {k: r["status"] for k, r in _rows(out).items()} == {
        "her2st_C2.h5ad": "skipped",
        "st_breast_cancer_layer2.h5ad": "skipped",
    }
    assert _rows(out)["her2st_C2.h5ad"]["genes"] == rows["her2st_C2.h5ad"]["genes"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_s2s.h5ad")} == stamps
    assert "Dask cluster" not in err  # nothing to do: no cluster started


def test_batch_retries_a_slide_whose_worker_died(tmp_path, data_dir, monkeypatch, capsys):
    marker = tmp_path / "died"
    monkeypatch.setenv("NAPARI_S2S_TEST_DIE_ONCE", f"her2st_C2|{marker}")
    cohort = _cohort(tmp_path, data_dir)
    out = tmp_path / "out"
    with dask.config.set({"distributed.worker.preload": [str(DIE_ONCE)]}):
        rc = main(["batch", str(cohort / "her2st_C2.h5ad"), "--out-dir", str(out), "--retries", "1"] + OPTS)
    err = capsys.readouterr().err
    assert marker.exists(), "the worker running her2st_C2 was not killed"
    assert rc == 0, err
    assert "her2st_C2.h5ad: its worker died; running it again (retry 1 of 1)" in err
    assert {k: r["status"] for k, r in _rows(out).items()} == {"her2st_C2.h5ad": "done"}
    settings = ImputeSettings(genes="top:2", max_steps=2, natural=False, tta=False, seed=2, device="cpu", threads=1)
    assert result_matches(out / "her2st_C2_s2s.h5ad", cohort / "her2st_C2.h5ad", settings) is None
    assert not list(out.glob(".*.tmp"))


def test_batch_worker_death_without_retries_is_a_failed_row(tmp_path, data_dir, monkeypatch, capsys):
    marker = tmp_path / "died"
    monkeypatch.setenv("NAPARI_S2S_TEST_DIE_ONCE", f"st_breast_cancer_layer2|{marker}")
    src = slide_path(data_dir, "st_breast_cancer_layer2")
    out = tmp_path / "out"
    with dask.config.set({"distributed.worker.preload": [str(DIE_ONCE)]}):
        rc = main(["batch", str(src), "--out-dir", str(out), "--workers", "1", "--retries", "0"] + OPTS)
    err = capsys.readouterr().err.strip().splitlines()
    assert marker.exists()
    assert rc == 2 and err[-1].startswith("napari-s2s: error: no slide could be imputed")
    row = _rows(out)["st_breast_cancer_layer2.h5ad"]
    assert row["status"] == "failed" and "worker died" in row["error"] and row["output"] == ""
    assert not (out / "st_breast_cancer_layer2_s2s.h5ad").exists()


def test_batch_on_a_running_scheduler(tmp_path, data_dir, capsys):
    from distributed import LocalCluster

    src = slide_path(data_dir, "st_breast_cancer_layer2")
    out = tmp_path / "out"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        rc = main(["batch", str(src), "--out-dir", str(out), "--scheduler", cluster.scheduler_address] + OPTS)
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"connected to {cluster.scheduler_address}: 1 worker(s)" in err
    assert _rows(out)["st_breast_cancer_layer2.h5ad"]["status"] == "done"


def test_batch_takes_the_reading_options_and_resumes_only_the_same_reading(tmp_path, data_dir, capsys):
    """``--pitch-um`` / ``--bin-um`` / ``--bin-from`` reach every slide of a batch, as with ``impute``; a
    result read another way is imputed again, not skipped."""
    src = slide_path(data_dir, "her2st_C2")
    out = tmp_path / "out"
    base = ["batch", str(src), "--out-dir", str(out), "--workers", "1"] + OPTS
    assert main(base + ["--pitch-um", "150"]) == 0, capsys.readouterr().err
    res = ad.read_h5ad(out / "her2st_C2_s2s.h5ad")
    assert dict(res.uns["s2s"]["reading"]) == {"counts_from": "auto", "pitch_um": 150.0}
    assert float(res.uns["s2s"]["pitch_um"]) == 150.0
    capsys.readouterr()
    assert main(base + ["--pitch-um", "150"]) == 0
    assert _rows(out)["her2st_C2.h5ad"]["status"] == "skipped"
    # a path that names no slide (a typo in a cohort list) is a failed row, and the batch exits 1
    typo = tmp_path / "her2st_C3.h5ad"
    assert (
        main(["batch", str(src), str(typo), "--out-dir", str(out), "--workers", "1", "--pitch-um", "150"] + OPTS) == 1
    )
    rows = _rows(out)
    assert rows["her2st_C2.h5ad"]["status"] == "skipped" and rows["her2st_C3.h5ad"]["status"] == "failed"
    assert "no such file or folder" in rows["her2st_C3.h5ad"]["error"]
    assert "her2st_C3.h5ad: no such file or folder; a failed row" in capsys.readouterr().err
    assert main(base) == 0
    err = capsys.readouterr().err
    assert "existing result not kept (read with other options (pitch_um 150.0 != None)); imputing again" in err
    assert _rows(out)["her2st_C2.h5ad"]["status"] == "done"
    assert "pitch_um" not in dict(ad.read_h5ad(out / "her2st_C2_s2s.h5ad").uns["s2s"]["reading"])
    assert main(base + ["--bin-um", "-3"]) == 2
    assert "error: bin size must be a positive number" in capsys.readouterr().err


def test_batch_ctrl_c_stops_cleanly_with_the_manifest_written(tmp_path, data_dir):
    cohort = _cohort(tmp_path, data_dir)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "napari_s2s.cli",
        "batch",
        str(cohort),
        "--out-dir",
        str(out),
        "--workers",
        "2",
        "--budget",
        "60",
        "--genes",
        "top:2",
        "--no-natural",
        "--device",
        "cpu",
    ]  # 60 s of training per slide
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        lines = []
        for line in proc.stderr:  # wait until the cluster runs, then give the tasks time to start training
            lines.append(line)
            if "local Dask cluster" in line:
                break
        time.sleep(4)
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
        rest = proc.stderr.read()
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert rc == 130, "".join(lines) + rest
    assert time.monotonic() - t0 < 30
    assert "interrupted: 0 of 2 slide(s) finished" in rest and "Traceback" not in rest
    assert read_manifest(out / "manifest.csv") == []  # written, with what finished: nothing
    assert sorted(p.name for p in out.iterdir()) == ["manifest.csv"]  # no result, no temporary file


# ---------------------------------------------------------------------- bad input: one line, exit 2
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "case, message",
    [
        ("out_is_file", "--out-dir is a file"),
        ("out_not_writable", "--out-dir is not writable"),
        ("out_cannot_be_created", "cannot create --out-dir"),
        ("no_slide", "no slide among the paths"),
        ("scheduler_silent", "cannot connect to the Dask scheduler"),
        ("scheduler_malformed", "expected tcp://host:port"),
        ("workers_zero", "--workers must be >= 1"),
        ("retries_negative", "--retries must be >= 0"),
        ("budget_zero", "--budget must be a finite number of seconds > 0"),  # the impute job's own check
    ],
)
def test_batch_bad_input_is_one_line_exit_2(tmp_path, data_dir, capsys, case, message):
    src = str(slide_path(data_dir, "st_breast_cancer_layer2"))
    args = ["batch", src, "--out-dir", str(tmp_path / "out")] + OPTS
    if case == "out_is_file":
        (tmp_path / "f").write_text("x")
        args = ["batch", src, "--out-dir", str(tmp_path / "f")] + OPTS
    elif case == "out_not_writable":
        args = ["batch", src, "--out-dir", "/proc/self"] + OPTS  # a folder nobody can create files in
    elif case == "out_cannot_be_created":
        args = ["batch", src, "--out-dir", "/proc/napari-s2s-out"] + OPTS
    elif case == "no_slide":
        args = [
            "batch",
            str(data_dir / "README.md"),
            str(tmp_path / "missing.h5ad"),
            "--out-dir",
            str(tmp_path / "out"),
        ] + OPTS
    elif case == "scheduler_silent":
        args += ["--scheduler", f"tcp://127.0.0.1:{_free_port()}", "--connect-timeout", "2"]
    elif case == "scheduler_malformed":
        args += ["--scheduler", "tcp://127.0.0.1:notaport"]
    elif case == "workers_zero":
        args += ["--workers", "0"]
    elif case == "retries_negative":
        args += ["--retries", "-1"]
    elif case == "budget_zero":
        args += ["--budget", "0"]
    t0 = time.monotonic()
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and message in err and err.startswith("napari-s2s: error: "), err
    assert time.monotonic() - t0 < 15  # no hang, no training
    if case == "no_slide":
        assert "README.md" in err and "missing.h5ad" in err
        assert not (tmp_path / "out").exists()
    if case.startswith("scheduler"):
        assert not list((tmp_path / "out").glob("*.h5ad"))
