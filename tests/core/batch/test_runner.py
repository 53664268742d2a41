"""Planning a batch (no cluster): what is skipped, what clashes, what is to do; a task never raises."""

from __future__ import annotations

from conftest import slide_path

from napari_s2s.core.batch.runner import impute_task, plan_batch
from napari_s2s.core.jobs import ImputeSettings

SETTINGS = ImputeSettings(genes="top:2", max_steps=1, natural=False, tta=False, device="cpu", threads=1)


def test_plan_skips_up_to_date_results_and_refuses_clashing_names(tmp_path, data_dir):
    src = slide_path(data_dir, "st_breast_cancer_layer2")
    other = tmp_path / "elsewhere" / src.name  # another slide with the same file name
    other.parent.mkdir()
    other.symlink_to(slide_path(data_dir, "her2st_C2"))
    out = tmp_path / "out"
    out.mkdir()
    row = impute_task(str(src), str(out / "st_breast_cancer_layer2_s2s.h5ad"), SETTINGS)
    assert row["status"] == "done" and row["error"] == "" and row["seconds"] > 0 and len(row["genes"]) == 2

    plan = plan_batch([src, other], out, SETTINGS)
    assert plan.todo == []
    assert [(r["path"], r["status"]) for r in plan.rows] == [(str(src), "skipped"), (str(other), "failed")]
    assert plan.rows[0]["genes"] == row["genes"] and plan.rows[0]["device"] == "cpu"
    assert "also the output of" in plan.rows[1]["error"]

    plan = plan_batch([src], out, SETTINGS.replace(seed=1))  # other settings: imputed again, and said why
    assert plan.todo == [(src, out / "st_breast_cancer_layer2_s2s.h5ad")] and "seed" in plan.redo[src]


def test_a_failing_slide_is_a_row_not_an_exception(tmp_path, data_dir):
    bad = tmp_path / "bad.h5ad"
    bad.write_bytes(b"\x00" * 100)
    row = impute_task(str(bad), str(tmp_path / "bad_s2s.h5ad"), SETTINGS)
    assert row["status"] == "failed" and row["error"].startswith(str(bad)) and "\n" not in row["error"]
    row = impute_task(str(slide_path(data_dir, "her2st_C2")), str(tmp_path / "x.h5ad"), SETTINGS.replace(genes="NOPE"))
    assert row["status"] == "failed" and "unknown gene" in row["error"]
    assert not list(tmp_path.glob("*_s2s.h5ad")) and not (tmp_path / "x.h5ad").exists()
