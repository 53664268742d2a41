"""The widget's plain-Python jobs (no display): previews of a training run and the empty layers it
starts with; pairing a method with its H&E-guided counterpart, the per-gene comparison, and the
hold-out job running both on one task."""

from __future__ import annotations

import numpy as np
import pytest

from napari_s2s.core.methods import load_all
from napari_s2s.gui.review import ReviewTable
from napari_s2s.gui.training import (
    HE_COUNTERPARTS,
    TrainingJob,
    TrainingOutcome,
    TrainingPreview,
    ValidationJob,
    ValidationOutcome,
    compare_metrics,
    he_counterpart,
    median_delta,
    next_preview_at,
    pending_layers,
)


def test_he_counterpart_pairs_methods():
    opts = {"preset": "fast", "budget_s": 3.0}
    assert he_counterpart("s2s", "auto", True, opts) == ("s2s-he", {**opts, "histology": "on"})  # trains like s2s
    assert he_counterpart("gaussian", "on", True, opts) == ("he_gaussian", {})
    assert he_counterpart("pca_gaussian", "auto", True, opts) == ("he_gaussian", {"smoother": "pca_gaussian"})
    # no guidance, no image, or no counterpart: the method alone
    assert he_counterpart("gaussian", "off", True) is None
    assert he_counterpart("gaussian", "on", False) is None
    assert he_counterpart("linear", "auto", True) is None
    assert he_counterpart("he_gaussian", "auto", True) is None
    # every counterpart is a registered method that needs the image
    methods = load_all()
    for name, _, _ in HE_COUNTERPARTS.values():
        assert getattr(methods[name], "needs_histology", False), name


def test_compare_metrics_and_review_columns(tmp_path):
    plain = {"A": {"pcc": 0.5, "rmse": 0.4}, "B": {"pcc": None, "rmse": 0.2}, "C": {"pcc": 0.1, "rmse": 0.3}}
    guided = {"A": {"pcc": 0.6, "rmse": 0.35}, "B": {"pcc": 0.2, "rmse": 0.25}, "C": {"pcc": 0.0, "rmse": 0.3}}
    cmp = compare_metrics(plain, guided)
    assert list(cmp) == ["A", "B", "C"]
    assert cmp["A"]["dpcc"] == pytest.approx(0.1) and cmp["A"]["drmse"] == pytest.approx(-0.05)
    assert cmp["B"]["dpcc"] is None and cmp["B"]["pcc_he"] == 0.2  # undefined plain PCC: no difference
    assert cmp["C"]["dpcc"] == pytest.approx(-0.1) and cmp["C"]["drmse"] == 0.0
    assert median_delta(cmp) == pytest.approx(0.0)  # median of +0.1 and -0.1
    assert median_delta(cmp, "drmse") == pytest.approx(0.0)
    assert median_delta(compare_metrics({"A": {"pcc": None}}, {})) is None

    table = ReviewTable(slide="s")
    table.set_metrics(cmp)
    assert table.rows["A"].dpcc == pytest.approx(0.1) and table.rows["B"].dpcc is None
    back = ReviewTable.from_csv(table.to_csv(tmp_path / "r.csv"))
    assert back.rows["A"].pcc_he == pytest.approx(0.6) and back.rows["C"].rmse_he == pytest.approx(0.3)
    table.set_metrics(plain)  # a later plain validation clears the guided numbers
    assert table.rows["A"].pcc_he is None and table.rows["A"].dpcc is None


def test_validation_job_runs_both_on_one_task(synthetic_slide):
    from napari_s2s.core.evaluation import benchmark

    genes = synthetic_slide.top_variable_genes(3)
    job = ValidationJob(
        synthetic_slide, genes, "pca_gaussian", seed=1, he_method="he_gaussian", he_options={"smoother": "pca_gaussian"}
    )
    out = [x for x in job.run() if isinstance(x, ValidationOutcome)][-1]
    assert out.he_method == "he_gaussian" and set(out.compared) == set(genes)
    task, truth, _ = benchmark.build_holdout(synthetic_slide, genes=out.genes, seed=1)
    plain = benchmark.run_method("pca_gaussian", task)[0]
    guided = benchmark.run_method("he_gaussian", task, smoother="pca_gaussian")[0]
    # error map is the plain method's; the comparison holds the guided method's numbers
    err = out.error_grid.values[0]
    np.testing.assert_allclose(np.sort(err[np.isfinite(err)]), np.sort(plain[:, 0] - truth[:, 0]), atol=1e-9)
    from napari_s2s.core.evaluation.metrics import rmse

    for k, g in enumerate(out.genes):
        assert out.compared[g]["rmse_he"] == pytest.approx(rmse(truth[:, k], guided[:, k]), rel=1e-9)
        assert out.compared[g]["rmse"] == pytest.approx(out.metrics[g]["rmse"], rel=1e-12)


def test_validation_job_streams_the_loss_curve_of_each_method_that_trains(synthetic_slide):
    """A validation of s2s trains for the budget (twice with its H&E counterpart): the dock's loss plot
    and step count follow it as they follow a training run, the second method's steps after the first's."""
    from conftest import TINY_NETWORK

    from napari_s2s.core.events import ProgressEvent
    from napari_s2s.gui.state import TrainingState

    genes = synthetic_slide.top_variable_genes(2)
    options = {**TINY_NETWORK, "max_steps": 5}
    job = ValidationJob(synthetic_slide, genes, "s2s", seed=0, options=options, he_method="s2s", he_options=options)
    state = TrainingState()
    items = list(job.run())
    for x in items:
        if isinstance(x, ProgressEvent):
            state.apply(x)
    assert isinstance(items[-1], ValidationOutcome) and items[-1].he_method == "s2s"
    assert [s for s, _ in state.losses] == list(range(1, 11))  # 5 steps, then 5 more
    assert all(np.isfinite(v) for _, v in state.losses)
    # a method that does not train leaves the plot empty
    plain = [x for x in ValidationJob(synthetic_slide, genes, "gaussian").run() if isinstance(x, ProgressEvent)]
    assert all(x.loss is None for x in plain)


def test_preview_schedule_doubles_and_respects_the_cost():
    assert next_preview_at(2.0, 0.1) == 4.0  # cheap previews: 2, 4, 8... s of training
    assert next_preview_at(2.0, 3.0) == pytest.approx(14.0)  # costly ones: >= 4x their cost apart
    assert next_preview_at(30.0, 1.0) == 60.0


def test_training_job_previews_fill_the_pending_layers(synthetic_slide, tiny_config):
    genes = synthetic_slide.top_variable_genes(2)
    cfg = tiny_config(max_steps=6)
    job = TrainingJob(synthetic_slide, genes, config=cfg, preview_after_s=0.0)
    items = list(job.run())
    previews = [x for x in items if isinstance(x, TrainingPreview)]
    assert isinstance(items[-1], TrainingOutcome) and previews
    assert previews[0].step == 1 and all(a.step < b.step for a, b in zip(previews, previews[1:]))
    pending = pending_layers(synthetic_slide, genes)
    shape = pending["imputed"][0].shape
    assert np.isnan(pending["imputed"][0]).all()
    for x in previews + [items[-1]]:
        assert x.layers["imputed"][0].shape == shape  # the same dense grid: filled in place
        assert np.isfinite(x.layers["imputed"][0]).any()
    assert pending["imputed"][1]["contrast_limits"] == items[-1].layers["imputed"][1]["contrast_limits"]
    impute = [x for x in items if getattr(x, "phase", "") == "impute"]
    assert impute and "about" in impute[0].message and job.impute_estimate_s() > 0  # from the previews
    steps = [x for x in items if getattr(x, "phase", "") == "train"]
    assert steps and all(x.loss is not None for x in steps)  # the loss plot's points
    assert all(x.message == "training" for x in steps)  # no second, raw loss in the progress line
    none = list(TrainingJob(synthetic_slide, genes, config=cfg, preview_after_s=None).run())
    assert not any(isinstance(x, TrainingPreview) for x in none)


def test_the_budget_bounds_the_wait_from_click_to_maps(synthetic_slide):
    """A 30 s budget took 45.7 s from the click to the maps: previews and the final imputation came on
    top. Now the budget covers the whole wait; the final imputation's estimate comes from the measured
    cost of the preview passes, and the progress line's two figures add up to the budget."""
    from napari_s2s.gui.widget import warm_up

    warm_up()  # as the dock does when it opens: the engine's one-time imports are not the run's
    genes = synthetic_slide.top_variable_genes(4)
    budget = 12.0
    job = TrainingJob(synthetic_slide, genes, preset="fast", overrides={"budget_s": budget, "device": "cpu"})
    items = list(job.run())
    out = items[-1]
    assert isinstance(out, TrainingOutcome) and not out.stopped
    assert any(isinstance(x, TrainingPreview) for x in items)
    train = [x for x in items if getattr(x, "phase", "") == "train"]
    assert train and all(ev.elapsed_s + ev.eta_s == pytest.approx(budget, abs=0.05) for ev in train if ev.eta_s > 0)
    assert job.pass_cost_s is not None and job.pass_cost_s > 0
    # the estimate comes from costs the engine measured in the previews (not a constant)
    assert out.impute_estimate_s is not None and out.impute_estimate_s > 0 and job.imputer.timing["pass"] > 0
    impute = [x for x in items if getattr(x, "phase", "") == "impute"]
    assert impute and f"about {out.impute_estimate_s:.0f} s" in impute[0].message
    # the whole wait within the budget, up to what the final imputation took beyond its estimate (on a
    # machine shared with other jobs it can); drawing the maps in the viewer is not included
    overrun = max(0.0, out.impute_s - out.impute_estimate_s)
    assert out.seconds <= budget + overrun + 1.0, (out.seconds, out.impute_s, out.impute_estimate_s)


def test_stop_before_training_started_is_not_lost(synthetic_slide):
    """A Stop during preparation used to be cleared when training started (the run went on)."""
    genes = synthetic_slide.top_variable_genes(2)
    job = TrainingJob(
        synthetic_slide, genes, preset="fast", overrides={"budget_s": 60.0, "device": "cpu"}, preview_after_s=None
    )
    run = job.run()
    first = next(run)
    assert first.phase == "prepare"
    job.stop()
    rest = list(run)
    out = rest[-1]
    assert isinstance(out, TrainingOutcome) and out.stopped and out.config.tta is False
    assert out.seconds < 30
    assert all(getattr(x, "phase", "stopping") in ("stopping",) for x in rest[:-1]), [x.phase for x in rest[:-1]]


def test_a_stop_during_a_preview_makes_that_preview_the_final_maps(synthetic_slide):
    """Stop while a preview is computed: the preview (one pass over the weights of that step) is the
    final maps at once; no second pass repeats it."""
    genes = synthetic_slide.top_variable_genes(3)
    job = TrainingJob(
        synthetic_slide, genes, preset="fast", overrides={"budget_s": 120.0, "device": "cpu"}, preview_after_s=0.0
    )
    preview = None
    for item in job.run():
        if isinstance(item, TrainingPreview) and preview is None:
            preview = item
            job.stop()  # the click reaches the job while the GUI draws the preview
        last = item
    assert isinstance(last, TrainingOutcome) and last.stopped and last.config.tta is False
    assert last.result is preview.result and last.impute_s < 0.1 and last.preview_step == preview.step
    np.testing.assert_array_equal(last.layers["imputed"][0], preview.layers["imputed"][0])


def test_a_preview_that_uses_up_the_budget_says_it_is_the_final_maps(synthetic_slide):
    """A budget that preparing nearly spends: the first preview (after one step) leaves no room for
    another pass, so it is the final maps, and it says so (training does not go on)."""
    genes = synthetic_slide.top_variable_genes(3)
    job = TrainingJob(
        synthetic_slide, genes, preset="fast", overrides={"budget_s": 0.5, "device": "cpu"}, preview_after_s=0.0
    )
    previews = []
    for item in job.run():
        if isinstance(item, TrainingPreview):
            previews.append(item)
        last = item
    assert len(previews) == 1 and previews[0].final
    assert isinstance(last, TrainingOutcome) and not last.stopped and last.result is previews[0].result
    assert last.preview_step == previews[0].step
    # the saved provenance says where the maps come from, not the ensemble's blend they do not show
    assert "maps_from" in last.provenance and "alpha" not in last.provenance and last.provenance["steps"] >= 1


def test_a_runtime_error_in_a_run_ends_it_and_is_reported(qtbot, monkeypatch):
    """torch raises RuntimeError (out of memory, "Inference tensors cannot be saved for backward");
    superqt's worker drops those silently, which left the dock waiting for the run forever."""
    from napari_s2s.gui import workers
    from napari_s2s.gui.messages import one_line

    monkeypatch.delenv(workers.SYNC_ENV, raising=False)
    seen = {}

    def run():
        yield 1
        raise RuntimeError("Inference tensors cannot be saved for backward")

    workers.start(
        run,
        lambda item: seen.setdefault("yielded", item),
        lambda exc: seen.setdefault("error", exc),
        lambda: seen.setdefault("finished", True),
    )
    qtbot.waitUntil(lambda: "finished" in seen, timeout=10000)
    assert seen["yielded"] == 1
    assert one_line(seen["error"]) == "RuntimeError: Inference tensors cannot be saved for backward"
