"""The dock widget end to end on a real slide: open, pick genes, train (real thread_worker), stop,
layers with the right transforms, side by side, review export, save and read back."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_s2s.gui.layers import s2s_meta
from napari_s2s.gui.review import ReviewTable
from napari_s2s.gui.settings import SettingsStore

pytestmark = pytest.mark.gui


@pytest.fixture
def notes(monkeypatch):
    """Notifications the widget shows, as ``(kind, message)``."""
    seen = []
    monkeypatch.setattr("napari_s2s.gui.messages.notify", lambda kind, msg: seen.append((kind, msg)))
    return seen


@pytest.fixture
def widget(plugin_dock):
    """The dock as users get it: napari's plugin dock contribution (the viewer is napari's proxy)."""
    return plugin_dock()


def _layer(viewer, kind):
    found = [layer for layer in viewer.layers if (s2s_meta(layer) or {}).get("kind") == kind]
    assert found, f"no {kind} layer"
    return found[-1]


def _world(layer, index):
    return np.asarray(layer.data_to_world(index), dtype=float)


def test_whole_path_on_a_real_slide(widget, qtbot, data_dir, tmp_path, notes):
    import anndata

    viewer = widget.viewer
    viewer.open(str(data_dir / "her2st_C2.h5ad"), plugin="napari-s2s")
    slide = widget.current_slide()
    assert slide is not None and slide.name == "her2st_C2"
    assert len(widget.selected_genes()) == widget.genes_box.top_n_spin.value()  # top-N preset on open

    # pick genes by search-as-you-type
    widget.set_genes([])
    qtbot.keyClicks(widget.genes_box.search_edit, "erbb")
    matches = [widget.genes_box.match_list.item(i).text() for i in range(widget.genes_box.match_list.count())]
    assert matches and matches[0] == "ERBB2" and all("ERBB" in m for m in matches)
    widget.genes_box.match_list.setCurrentRow(0)
    qtbot.mouseClick(widget.genes_box.add_button, Qt.MouseButton.LeftButton)
    # paste a list with a typo: the known genes are taken, the unknown one reported with a match
    widget.apply_gene_list("ERBB2, GRB7\nkrt19 SCGB2A2 ERBB2 GRB77")
    assert widget.selected_genes() == ["ERBB2", "GRB7", "KRT19", "SCGB2A2"]
    assert "GRB77" in widget.genes_box.unknown_label.text() and "GRB7" in widget.genes_box.unknown_label.text()
    assert notes and notes[-1][0] == "warning"
    genes = widget.selected_genes()
    # the opened measured stack follows the selection (no new layer): picked genes show at once
    stacks = [x for x in viewer.layers if (s2s_meta(x) or {}).get("kind") == "measured"]
    assert len(stacks) == 1 and s2s_meta(stacks[0])["genes"] == genes and stacks[0].data.shape[0] == len(genes)
    np.testing.assert_array_equal(stacks[0].data, slide.grid(genes).display()[0])

    # small budget, CPU; settings persist
    widget.settings_box.budget_spin.setValue(30)
    widget.settings_box.device_combo.setCurrentIndex(widget.settings_box.device_combo.findData("cpu"))
    widget.settings_box.seed_spin.setValue(3)
    assert SettingsStore().load().seed == 3
    widget.settings_box.aux_spin.setValue(6)  # extra training genes: the dock's setting reaches the engine
    assert SettingsStore().load().aux_genes == 6

    # train in the real thread_worker, stop as soon as it trains
    qtbot.mouseClick(widget.train_box.train_button, Qt.MouseButton.LeftButton)
    assert widget.worker is not None and widget.running
    assert not widget.train_box.train_button.isEnabled() and widget.train_box.stop_button.isEnabled()
    qtbot.waitUntil(lambda: widget.state.phase == "train" or not widget.running, timeout=60000)
    qtbot.mouseClick(widget.train_box.stop_button, Qt.MouseButton.LeftButton)
    worker = widget.worker
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    if worker is not None:
        qtbot.waitUntil(lambda: not worker.is_running, timeout=10000)
    assert widget.state.phase == "stopped", widget.state.message
    assert widget.last_outcome is not None and widget.last_outcome.stopped
    assert widget.last_outcome.config.aux_genes == 6  # the dock's extra genes reached the engine
    assert widget.state.losses, "no loss reached the plot"
    assert widget.train_box.loss_plot.points()
    assert widget.train_box.train_button.isEnabled()

    # layers: measured and imputed stacks for the genes, aligned in micrometres
    assert [x for x in viewer.layers if (s2s_meta(x) or {}).get("kind") == "measured"] == stacks  # reused
    imputed = _layer(viewer, "imputed")
    measured = [
        layer
        for layer in viewer.layers
        if (s2s_meta(layer) or {}).get("kind") == "measured" and s2s_meta(layer)["genes"] == genes
    ][-1]
    assert s2s_meta(imputed)["genes"] == genes and imputed.data.shape[0] == len(genes)
    assert [str(u) for u in imputed.units[1:]] == ["micrometer", "micrometer"]
    result = s2s_meta(imputed)["result"]
    grid_m = s2s_meta(measured)["grid"]
    grid_i = s2s_meta(imputed)["grid"]
    # every measured spot: same world point in both layers, and the imputed value is the measured one
    r0, c0 = grid_i.origin
    is_meas = result.measured
    rr = result.dense_rows[is_meas]
    cc = result.dense_cols[is_meas]
    world_i = np.array([_world(imputed, (0, r - r0, c - c0)) for r, c in zip(rr, cc)])
    world_m = np.array(
        [_world(measured, (0, r // 2 - grid_m.origin[0], c // 2 - grid_m.origin[1])) for r, c in zip(rr, cc)]
    )
    np.testing.assert_allclose(world_i, world_m, atol=1e-6 * np.abs(world_m).max())
    vals_m = measured.data[:, rr // 2 - grid_m.origin[0], cc // 2 - grid_m.origin[1]]
    vals_i = imputed.data[:, rr - r0, cc - c0]
    np.testing.assert_array_equal(vals_i, vals_m)
    # imputed positions fill the gaps between measured spots
    assert np.isfinite(imputed.data[0]).sum() > 2 * np.isfinite(measured.data[0]).sum()

    # shared contrast per gene, following the gene slider
    viewer.dims.set_current_step(0, 1)
    limits = s2s_meta(imputed)["gene_limits"]
    assert tuple(imputed.contrast_limits) == tuple(measured.contrast_limits) == tuple(limits[1])
    assert viewer.canvas.overlays.text.text == genes[1]

    # side by side: two viewboxes, measured | imputed, the H&E under each
    widget.results_box.side_by_side_check.setChecked(True)
    grid = viewer.canvas.grid
    assert grid.enabled
    layers = list(viewer.layers)
    pos = {layer.name: grid.position(layers.index(layer), layers) for layer in layers}
    he_layers = [layer for layer in layers if (s2s_meta(layer) or {}).get("kind") in ("he", "he_copy")]
    assert len(he_layers) == 2
    assert pos[measured.name] != pos[imputed.name]
    assert {pos[h.name] for h in he_layers} == {pos[measured.name], pos[imputed.name]}
    widget.results_box.side_by_side_check.setChecked(False)
    assert not grid.enabled and len([x for x in viewer.layers if s2s_meta(x)["kind"] == "he_copy"]) == 0

    # review: accept / flag / comment, exported as CSV
    widget.set_review("ERBB2", status="accepted", comment="matches the IHC")
    widget.set_review("GRB7", status="flagged", comment="edge artefact?")
    out_csv = widget.export_review(tmp_path / "review.csv")
    with open(out_csv, newline="") as fh:
        rows = {r["gene"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(genes)
    assert rows["ERBB2"]["status"] == "accepted" and rows["ERBB2"]["comment"] == "matches the IHC"
    assert rows["GRB7"]["status"] == "flagged" and rows["KRT19"]["status"] == ""
    assert ReviewTable.from_csv(out_csv).rows["GRB7"].comment == "edge artefact?"

    # save (button path and npe2 writer) and read back
    saved = widget.save_results(tmp_path / "imputed.h5ad")
    import napari

    written = napari.save_layers(str(tmp_path / "via_writer.h5ad"), [imputed], plugin="napari-s2s")
    assert written == [str(tmp_path / "via_writer.h5ad")]
    for path in (saved, written[0]):
        ad = anndata.read_h5ad(path)
        assert list(ad.var_names) == genes
        assert "s2s" in ad.uns and ad.uns["s2s"]["genes"] is not None
        # how the maps were made, as the CLI writes it: base predictor, networks' weight, verdict
        prov, out = ad.uns["s2s"], widget.last_outcome
        assert {"steps", "histology", "base", "base_members"} <= set(prov) and prov["steps"] > 0 and prov["base"]
        if out.preview_step is None:  # the ensemble's maps: their weight and verdict
            assert prov["verdict"] == out.verdict and "alpha" in prov
        else:  # Stop came during a preview: those maps are the result, and the file says so
            assert f"step {out.preview_step}" in prov["maps_from"] and "alpha" not in prov
        assert ad.obs["s2s_measured"].sum() == int(slide.usable().sum())
        m = ad.obs["s2s_measured"].to_numpy()
        x = np.asarray(ad.X[m])
        ref = slide.lognorm(genes)
        assert sorted(map(tuple, x.round(5))) == sorted(map(tuple, ref.round(5)))


def test_errors_are_notifications_and_widget_stays_usable(widget, qtbot, synthetic_slide, notes):
    from napari_s2s.gui.layers import slide_layers

    viewer = widget.viewer
    assert widget.minimumSizeHint().width() <= 260  # usable in a narrow dock (the panel scrolls)
    assert widget._scroll.widget().minimumSizeHint().width() <= 250  # ... vertically only: nothing cut at 270 px
    for data, kwargs, _ in slide_layers(synthetic_slide):
        viewer.add_image(data, **kwargs)
    widget.settings_box.budget_spin.setValue(5)
    # a device this machine lacks: the engine raises in the worker -> one-line notification
    widget.settings_box.device_combo.setCurrentIndex(widget.settings_box.device_combo.findData("cuda"))
    if (
        "cuda" in widget.settings_box.device_combo.itemText(widget.settings_box.device_combo.currentIndex())
        and "not available" not in widget.settings_box.device_combo.currentText()
    ):
        pytest.skip("this machine has CUDA")
    widget.start_training()
    qtbot.waitUntil(lambda: not widget.running, timeout=30000)
    assert widget.state.phase == "error"
    assert notes and notes[-1][0] == "error" and "\n" not in notes[-1][1]
    assert widget.imputed_layer() is None  # the empty stack of the failed run is gone
    assert widget.train_box.train_button.isEnabled() and not widget.train_box.stop_button.isEnabled()
    # settings persist: a new widget (next session) starts from the saved ones
    from napari_s2s.gui.widget import S2SWidget

    again = S2SWidget(viewer)
    assert again.settings_box.budget_spin.value() == 5
    assert again.settings_box.device_combo.currentData() == "auto"  # the saved device is not available here
    again.deleteLater()


def test_open_menu_file_or_folder(widget, data_dir, monkeypatch):
    from napari_s2s.gui import open_menu as widget_mod

    asked = []
    monkeypatch.setattr(
        widget_mod.QFileDialog,
        "getOpenFileName",
        lambda *a, **k: (asked.append("file"), (str(data_dir / "her2st_C2.h5ad"), ""))[1],
    )
    monkeypatch.setattr(
        widget_mod.QFileDialog, "getExistingDirectory", lambda *a, **k: (asked.append("folder"), "")[1]
    )  # the user cancels
    file_action, folder_action, binned_action = widget.slide_box.open_button.menu().actions()
    assert "Visium HD" in folder_action.text() and "Xenium" in binned_action.text()
    folder_action.trigger()
    assert asked == ["folder"] and widget.current_slide() is None  # cancelled: nothing opened, no other dialog
    file_action.trigger()
    assert asked == ["folder", "file"] and widget.current_slide().name == "her2st_C2"
    monkeypatch.setattr(
        widget_mod.QFileDialog, "getExistingDirectory", lambda *a, **k: str(data_dir / "visium_mouse_brain")
    )
    folder_action.trigger()
    assert widget.current_slide().name != "her2st_C2" and widget.current_slide().kind == "hex"


def test_paper_preset_on_cpu_is_flagged(widget):
    note = widget.settings_box.preset_note
    widget.settings_box.device_combo.setCurrentIndex(widget.settings_box.device_combo.findData("cpu"))
    widget.settings_box.preset_combo.setCurrentText("paper")
    assert not note.isHidden() and "GPU" in note.text()
    widget.settings_box.preset_combo.setCurrentText("fast")
    assert note.isHidden()


def test_closing_the_viewer_stops_training(plugin_dock, qtbot, synthetic_slide):
    from napari_s2s.gui.layers import slide_layers

    w = plugin_dock()
    viewer = w.viewer
    for data, kwargs, _ in slide_layers(synthetic_slide):
        viewer.add_image(data, **kwargs)
    w.settings_box.budget_spin.setValue(120)
    w.settings_box.device_combo.setCurrentIndex(w.settings_box.device_combo.findData("cpu"))
    w.start_training()
    worker, job = w.worker, w._runner.job
    qtbot.waitUntil(lambda: w.state.phase == "train", timeout=60000)
    viewer.close()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=30000)
    assert job.stop_requested


def test_preview_maps_come_early_then_the_final_maps_replace_them(widget, qtbot, synthetic_slide, tmp_path):
    """A preview map appears after ~2 s of training; the final maps update the same layer in place."""
    from napari_s2s.gui.layers import slide_layers

    viewer = widget.viewer
    for data, kwargs, _ in slide_layers(synthetic_slide):
        viewer.add_image(data, **kwargs)
    widget.set_genes(synthetic_slide.top_variable_genes(3))
    widget.settings_box.budget_spin.setValue(8)
    widget.settings_box.device_combo.setCurrentIndex(widget.settings_box.device_combo.findData("cpu"))
    widget.start_training()
    # the layers are there as Train is clicked (nothing is added while training runs): empty for now
    pending = widget.imputed_layer()
    assert pending is not None and s2s_meta(pending)["step"] == 0 and "training" in pending.name
    assert np.isnan(pending.data).all() and widget.first_map_s is None

    def previewed():
        return s2s_meta(widget.imputed_layer()).get("step", 0) > 0 or not widget.running

    qtbot.waitUntil(previewed, timeout=60000)
    assert widget.running, "no preview before training ended"
    preview = widget.imputed_layer()
    assert preview.unique_id == pending.unique_id  # filled in place (the same layer)
    meta = s2s_meta(preview)
    assert meta["preview"] and "preview" in preview.name
    assert np.isfinite(preview.data).sum() > 0
    assert widget.first_map_s is not None and widget.final_map_s is None
    assert not widget.results_box.save_button.isEnabled()  # a preview cannot be saved
    with pytest.raises(ValueError, match="train first|preview|only imputed"):
        widget.save_results(tmp_path / "preview.h5ad")
    qtbot.waitUntil(lambda: not widget.running, timeout=120000)
    assert widget.state.phase == "done", widget.state.message
    final = widget.imputed_layer()
    assert final.unique_id == preview.unique_id  # updated in place, not a second layer
    assert [layer for layer in viewer.layers if (s2s_meta(layer) or {}).get("kind") == "imputed"] == [final]
    assert final.name.startswith("imputed by S2S-ST:") and not s2s_meta(final).get("preview")
    assert s2s_meta(final)["result"] is not None and widget.results_box.save_button.isEnabled()
    # with the final maps (not while training): hidden rings at the measured spots, on their dense positions
    spots = [layer for layer in viewer.layers if (s2s_meta(layer) or {}).get("kind") == "spots"]
    assert len(spots) == 1 and not spots[0].visible and viewer.layers.selection.active == final
    assert len(spots[0].data) == int(synthetic_slide.usable().sum())
    res_ = s2s_meta(final)["result"]
    grid_ = s2s_meta(final)["grid"]
    ii = res_.dense_rows[res_.measured] - grid_.origin[0]
    jj = res_.dense_cols[res_.measured] - grid_.origin[1]
    want = (np.asarray(grid_.index_to_world) @ np.stack([ii, jj, np.ones_like(ii)]).astype(float))[:2].T
    got = np.asarray(spots[0].data, float)
    order = lambda a: a[np.lexsort((a[:, 1], a[:, 0]))]  # noqa: E731
    np.testing.assert_allclose(order(np.round(got, 6)), order(np.round(want, 6)), atol=1e-6)
    assert widget.final_map_s > widget.first_map_s
    # measured values exact in the final maps, as shown
    res = s2s_meta(final)["result"]
    grid = s2s_meta(final)["grid"]
    ii, jj = res.dense_rows[res.measured] - grid.origin[0], res.dense_cols[res.measured] - grid.origin[1]
    np.testing.assert_array_equal(final.data[:, ii, jj], res.values[res.measured].T)
    # display option: the network's output at measured spots (smoother), then back to the exact values
    widget.results_box.model_at_spots_check.setChecked(True)
    np.testing.assert_array_equal(final.data[:, ii, jj], res.model_values[res.measured].T)
    assert SettingsStore().load().model_at_spots
    saved = widget.save_results(tmp_path / "shown_smooth.h5ad")
    import anndata

    ad = anndata.read_h5ad(saved)  # saving keeps the measured values exact whatever is shown
    np.testing.assert_array_equal(np.asarray(ad.X), res.values)
    np.testing.assert_array_equal(ad.layers["s2s_model"], res.model_values)
    widget.set_model_at_spots(False)
    assert not widget.results_box.model_at_spots_check.isChecked()
    np.testing.assert_array_equal(final.data[:, ii, jj], res.values[res.measured].T)
    # training again on the same genes replaces the maps (no pile of layers)
    widget.settings_box.budget_spin.setValue(1)
    widget.start_training()
    qtbot.waitUntil(lambda: not widget.running, timeout=120000)
    imputed = [layer for layer in viewer.layers if (s2s_meta(layer) or {}).get("kind") == "imputed"]
    assert len(imputed) == 1 and imputed[0].name.startswith("imputed by S2S-ST:") and imputed[0].visible
    # a run that fails before its first map leaves the earlier maps as they were
    cuda = widget.settings_box.device_combo.findData("cuda")
    if "not available" in widget.settings_box.device_combo.itemText(cuda):
        widget.settings_box.device_combo.setCurrentIndex(cuda)
        widget.start_training()
        qtbot.waitUntil(lambda: not widget.running, timeout=60000)
        assert widget.state.phase == "error"
        after = [layer for layer in viewer.layers if (s2s_meta(layer) or {}).get("kind") == "imputed"]
        assert after == imputed and after[0].visible and after[0].name.startswith("imputed by S2S-ST:")


def test_reviewing_a_saved_result(widget, qtbot, synthetic_slide, tmp_path, notes, tiny_config):
    """A pathologist opens a result saved by `napari-s2s impute`, reviews its genes without training,
    exports the review, and later loads it back to continue."""
    from napari_s2s.core.s2s.engine import S2SImputer
    from napari_s2s.core.s2s.results import write_imputed

    genes = synthetic_slide.top_variable_genes(3)
    cfg = tiny_config(max_steps=2)
    res = S2SImputer(cfg).fit(synthetic_slide, genes).impute(synthetic_slide)
    saved = write_imputed(res.to_anndata(synthetic_slide, cfg, 1.0), tmp_path / "result.h5ad")

    viewer = widget.viewer
    viewer.open(str(saved), plugin="napari-s2s")
    slide = widget.current_slide()
    assert slide is not None and slide.is_imputed_result
    assert widget.selected_genes() == genes  # the result's genes, not the top-variable default
    assert list(widget.review.rows) == genes and widget.review_table.rowCount() == len(genes)
    assert not widget.train_box.train_button.isEnabled() and "original slide" in widget.train_box.train_button.toolTip()
    assert "saved S2S result" in widget.slide_box.info.text()
    stack = [layer for layer in viewer.layers if (s2s_meta(layer) or {}).get("saved_result")]
    assert len(stack) == 1 and "imputed" in stack[0].name and stack[0].data.shape[0] == len(genes)
    spots = [layer for layer in viewer.layers if (s2s_meta(layer) or {}).get("kind") == "spots"]
    assert len(spots) == 1 and not spots[0].visible
    assert len(spots[0].data) == int(res.measured.sum()) == int(synthetic_slide.usable().sum())
    # the markers sit on the stack's measured positions: the stack's values there are the measured ones
    idx = np.round(stack[0].world_to_data(np.c_[np.zeros(len(spots[0].data)), spots[0].data])).astype(int)
    shown = stack[0].data[0][idx[:, 1], idx[:, 2]]
    assert np.isfinite(shown).all()

    widget.set_review(genes[0], status="accepted", comment="clear pattern")
    widget.set_review(genes[1], status="flagged")
    csv_path = widget.export_review(tmp_path / "review.csv")
    # next session: a fresh table, then the CSV brings the review back
    widget.review.rows.clear()
    widget.review.set_genes(genes)
    assert widget.load_review(csv_path) == len(genes)
    assert widget.review.rows[genes[0]].status == "accepted" and widget.review.rows[genes[0]].comment == "clear pattern"
    assert widget.review.rows[genes[1]].status == "flagged" and widget.review.rows[genes[2]].status == ""
    assert widget.review_table.item(0, 1).text() == "accept"  # shown in the table too
    # a file that is not a review: one clear error, the table unchanged
    bad = tmp_path / "bad.csv"
    bad.write_text("name,value\nx,1\n")
    with pytest.raises(ValueError, match="not a napari-s2s review"):
        widget.load_review(bad)
    assert widget.review.rows[genes[0]].status == "accepted"


def test_validation_mode(widget, qtbot, read_shared, monkeypatch):
    """Hold-out validation: per-gene PCC/RMSE in the review table and an error-map stack."""
    from napari_s2s.gui.layers import slide_layers

    monkeypatch.setenv("NAPARI_S2S_SYNC", "1")  # deterministic: runs in the GUI thread
    slide = read_shared("st_mouse_olfactory_bulb")
    viewer = widget.viewer
    for data, kwargs, _ in slide_layers(slide):
        viewer.add_image(data, **kwargs)
    widget.set_genes(slide.top_variable_genes(3))
    widget.settings_box.budget_spin.setValue(3)
    combo = widget.settings_box.histology_combo
    combo.setCurrentIndex(combo.findData("off"))  # guidance off: the method alone (default: auto)
    methods = [widget.train_box.method_combo.itemText(i) for i in range(widget.train_box.method_combo.count())]
    assert "gaussian" in methods and methods[0] == ("s2s" if "s2s" in methods else methods[0])
    widget.train_box.method_combo.setCurrentText("s2s" if "s2s" in methods else "gaussian")
    widget.start_validation()
    assert not widget.running and widget.state.phase == "done", widget.state.message
    err = _layer(viewer, "error")
    out = widget.last_validation
    assert out.genes == widget.selected_genes() == s2s_meta(err)["genes"]
    assert out.n_measured + out.n_hidden == int(slide.usable().sum())
    # errors sit at hidden spots only
    assert int(np.isfinite(out.error_grid.values[0]).sum()) == out.n_hidden
    for g in out.genes:
        m = widget.review.rows[g]
        assert m.rmse is not None and m.rmse > 0
    t = widget.review_table
    assert t.item(0, widget.review_column("PCC")).text() != "" and t.item(0, widget.review_column("RMSE")).text() != ""
    # guidance off: no H&E comparison, its columns hidden
    assert out.compared is None and t.isColumnHidden(widget.review_column("ΔPCC"))
    # the done line names the method and its median over the genes
    pcc = np.median([m["pcc"] for m in out.metrics.values() if m.get("pcc") is not None])
    assert f"{out.method} median PCC {pcc:.3f}" in widget.state.message, widget.state.message


def test_validation_with_and_without_he(widget, qtbot, synthetic_slide, monkeypatch, notes):
    """H&E guidance "auto" on a slide with an image: gaussian and he_gaussian on the same hold-out
    task, per gene PCC/RMSE with and without H&E and the difference in the review table."""
    from napari_s2s.core.evaluation import benchmark
    from napari_s2s.core.evaluation.metrics import pcc, rmse
    from napari_s2s.gui.layers import slide_layers

    monkeypatch.setenv("NAPARI_S2S_SYNC", "1")
    slide = synthetic_slide
    for data, kwargs, _ in slide_layers(slide):
        widget.viewer.add_image(data, **kwargs)
    genes = slide.top_variable_genes(4)
    widget.set_genes(genes)
    widget.settings_box.seed_spin.setValue(2)
    widget.settings_box.histology_combo.setCurrentIndex(widget.settings_box.histology_combo.findData("auto"))
    widget.train_box.method_combo.setCurrentText("gaussian")
    widget.start_validation()
    assert widget.state.phase == "done", widget.state.message
    out = widget.last_validation
    assert out.method == "gaussian" and out.he_method == "he_gaussian"
    assert "ΔPCC" in widget.state.message and "he_gaussian" in widget.state.message

    # the same task by hand: the table's numbers are run_method's for both methods
    task, truth, _ = benchmark.build_holdout(slide, genes=out.genes, seed=2)
    truth = np.asarray(truth, dtype=float)
    plain = benchmark.run_method("gaussian", task)[0]
    guided = benchmark.run_method("he_gaussian", task)[0]
    assert not np.allclose(plain, guided)  # the image changes the prediction on this slide
    t = widget.review_table
    cols = {h: widget.review_column(h) for h in ("PCC", "PCC +H&E", "ΔPCC", "RMSE", "RMSE +H&E", "ΔRMSE")}
    assert not any(t.isColumnHidden(cols[h]) for h in ("PCC", "ΔPCC", "RMSE", "ΔRMSE"))
    # the guided values themselves stay hidden (narrow dock) but are in the table and the Δ tooltips
    assert t.isColumnHidden(cols["PCC +H&E"]) and t.isColumnHidden(cols["RMSE +H&E"])
    assert "with H&E" in t.item(0, cols["ΔPCC"]).toolTip()
    assert t.rowCount() == len(out.genes)
    for r in range(t.rowCount()):
        gene = t.item(r, 0).text()
        k = out.genes.index(gene)
        want = {
            "PCC": pcc(truth[:, k], plain[:, k]),
            "PCC +H&E": pcc(truth[:, k], guided[:, k]),
            "RMSE": rmse(truth[:, k], plain[:, k]),
            "RMSE +H&E": rmse(truth[:, k], guided[:, k]),
        }
        want["ΔPCC"] = want["PCC +H&E"] - want["PCC"]
        want["ΔRMSE"] = want["RMSE +H&E"] - want["RMSE"]
        row = widget.review.rows[gene]
        for h, v in want.items():
            assert float(t.item(r, cols[h]).text()) == pytest.approx(v, abs=6e-4), (gene, h)
        assert row.pcc_he == pytest.approx(want["PCC +H&E"], rel=1e-9)
        assert row.drmse == pytest.approx(want["ΔRMSE"], rel=1e-9, abs=1e-12)
    assert not notes

    # "on" where the image is not usable: one notification, the plain method only, H&E columns hidden
    monkeypatch.setattr("napari_s2s.core.data.histology_features.histology_available", lambda *a, **k: False)
    widget.settings_box.histology_combo.setCurrentIndex(widget.settings_box.histology_combo.findData("on"))
    widget.start_validation()
    assert widget.state.phase == "done", widget.state.message
    assert len(notes) == 1 and notes[0][0] == "warning" and "\n" not in notes[0][1] and "H&E" in notes[0][1]
    out = widget.last_validation
    assert out.he_method is None and out.compared is None and "ΔPCC" not in widget.state.message
    assert widget.review.rows[out.genes[0]].pcc_he is None
    assert t.isColumnHidden(cols["ΔPCC"]) and not t.isColumnHidden(cols["PCC"])
