"""Which slides a batch's paths name, and where each result goes."""

from __future__ import annotations

from pathlib import Path

from conftest import slide_path

from napari_s2s.core.batch.inputs import find_slides, output_path, slide_name


def test_folders_are_scanned_for_slides(tmp_path, data_dir):
    cohort = tmp_path / "cohort"
    (cohort / "sub").mkdir(parents=True)
    (cohort / "patient7").mkdir()
    (cohort / "a.h5ad").symlink_to(slide_path(data_dir, "her2st_C2"))
    (cohort / "sub" / "b.h5ad").symlink_to(slide_path(data_dir, "st_breast_cancer_layer2"))
    (cohort / "patient7" / "outs").symlink_to(slide_path(data_dir, "visium_mouse_brain"))  # a Space Ranger run
    (cohort / ".hidden.h5ad").write_bytes(b"x")
    (cohort / "notes.txt").write_text("not a slide")
    (cohort / "results").mkdir()
    (cohort / "results" / "a_s2s.h5ad").write_bytes(b"x")  # the batch's own output folder is left out
    slides, problems = find_slides([cohort], exclude=cohort / "results")
    assert problems == []
    assert [p.relative_to(cohort).as_posix() for p in slides] == ["a.h5ad", "patient7/outs", "sub/b.h5ad"]
    assert all(p.is_absolute() for p in slides)
    assert [output_path(tmp_path, p).name for p in slides] == ["a_s2s.h5ad", "patient7_s2s.h5ad", "b_s2s.h5ad"]


def test_each_slide_once_and_problems_named(tmp_path, data_dir):
    run = tmp_path / "patient7"
    run.mkdir()
    (run / "outs").symlink_to(slide_path(data_dir, "visium_mouse_brain"))
    c2 = slide_path(data_dir, "her2st_C2")
    (tmp_path / "empty").mkdir()
    slides, problems = find_slides(
        [run, run / "outs", c2, str(c2), tmp_path / "missing.h5ad", data_dir / "README.md", tmp_path / "empty"]
    )
    assert slides == [run / "outs", c2]  # a run folder and its outs/ are one slide; a file named twice, once
    assert [Path(p).name for p, _ in problems] == ["missing.h5ad", "README.md", "empty"]
    assert [r.split(" ")[0] for _, r in problems] == ["no", "not", "no"]


def test_a_cohort_folder_given_as_its_own_out_dir_says_so(tmp_path, data_dir):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    (cohort / "a.h5ad").symlink_to(slide_path(data_dir, "her2st_C2"))
    slides, problems = find_slides([cohort], exclude=cohort)
    assert slides == [] and "outside --out-dir" in problems[0][1]
    (tmp_path / "notes.txt").write_text("not a slide")
    slides, problems = find_slides([tmp_path / "notes.txt"])
    assert "SpatialData" in problems[0][1] and "Xenium" in problems[0][1]


def test_slide_names_follow_the_slide_model(data_dir, read_shared):
    for name in ("her2st_C2", "visium_mouse_brain"):
        assert slide_name(slide_path(data_dir, name)) == read_shared(name).name
