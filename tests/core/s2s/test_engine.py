"""The engine facade: config, training events, stop, imputation contract, save/load, determinism."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from conftest import TINY_NETWORK

from napari_s2s.core.data.lattice import dense_positions
from napari_s2s.core.data.slide import GeneGrid
from napari_s2s.core.errors import SlideError
from napari_s2s.core.s2s.engine import PRESETS, ImputedResult, S2SConfig, S2SImputer


def tiny(**kw) -> S2SConfig:
    """A tiny, fast, deterministic config for tests (conftest's ``TINY_NETWORK``)."""
    return S2SConfig.from_preset("fast", **{**TINY_NETWORK, **kw})


def _measured_in_slide_order(slide, genes, result: ImputedResult) -> tuple[np.ndarray, np.ndarray]:
    use = slide.usable()
    key = {(2 * int(r), 2 * int(c)): i for i, (r, c) in enumerate(zip(slide.array_row[use], slide.array_col[use]))}
    idx = np.array(
        [key[(int(r), int(c))] for r, c in zip(result.dense_rows[result.measured], result.dense_cols[result.measured])]
    )
    return result.values[result.measured], slide.lognorm(genes)[idx]


# ---------------------------------------------------------------------- config
def test_config_presets_validation_and_round_trip():
    fast = S2SConfig()
    assert fast.preset == "fast" and fast.cascades == PRESETS["fast"]["cascades"]
    paper = S2SConfig.from_preset("paper", seed=3)
    assert (paper.cascades, paper.features, paper.window, paper.seed) == (3, 32, 8, 3)
    assert S2SConfig.from_dict(paper.to_dict()) == paper
    assert S2SConfig(preset="paper").blocks == 8
    for bad in (
        dict(preset="huge"),
        dict(cascades=0),
        dict(device="tpu"),
        dict(loss="huber"),
        dict(dc="x"),
        dict(budget_s=None, max_steps=None),
        dict(natural_share=1.5),
        dict(budget_s=-1),
        dict(folds=1),
        dict(blend="half"),
        dict(base_model="gp"),
        dict(precision="fp8"),
        dict(bandwidth_genes=-1),
        dict(bandwidth_genes=2.5),
        dict(bandwidth_genes=True),
    ):
        with pytest.raises(ValueError):
            S2SConfig(**bad)


# ---------------------------------------------------------------------- training + imputation
def test_hex_slide_end_to_end_contract(synthetic_slide):
    slide = synthetic_slide
    genes = slide.top_variable_genes(3)
    imp = S2SImputer(tiny())
    events = list(imp.fit_iter(slide, genes))
    phases = [e.phase for e in events]
    assert phases[0] == "prepare" and phases[-1] == "done" and "train" in phases
    assert any("base predictor" in e.message for e in events) and any("out-of-fold" in e.message for e in events)
    train = [e for e in events if e.phase == "train"]
    assert [e.step for e in train] == [1, 2, 3, 4]
    assert (
        0.0 <= imp.alpha <= 1.0 and imp.stats["networks"] == 4 and imp.stats["base"].startswith(("kriging", "stack of"))
    )
    assert imp.verdict() in events[-1].message
    # the seconds said to be training's are training's, the rest is named as such
    st = imp.stats
    assert st["train_seconds"] < st["seconds"]
    assert f"4 steps in {st['train_seconds']:.1f} s ({st['seconds']:.1f} s with preparing" in events[-1].message
    assert all(e.loss is not None and e.elapsed_s >= 0 and e.eta_s is not None for e in train)
    res = imp.impute(slide)
    assert res.genes == genes and res.values.dtype == np.float32
    assert res.values.shape == (len(res.dense_rows), 3)
    # hex dense grid: every position a lattice node (R + C even), measured spots at (2 row, 2 col)
    assert np.all((res.dense_rows + res.dense_cols) % 2 == 0)
    assert res.measured.sum() == slide.usable().sum()
    got, want = _measured_in_slide_order(slide, genes, res)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))  # bitwise
    assert np.all(np.isfinite(res.values)) and res.values.min() >= 0
    assert res.xy_px is not None and res.xy_px.shape == (len(res.dense_rows), 2)
    # dense positions map to pixels with the slide's affine at half scale
    use = slide.usable()
    i0 = np.flatnonzero(res.measured)[0]
    j = np.flatnonzero(
        (slide.array_row[use] * 2 == res.dense_rows[i0]) & (slide.array_col[use] * 2 == res.dense_cols[i0])
    )[0]
    np.testing.assert_allclose(res.xy_px[i0], slide.pixel_xy[use][j], atol=0.5 * slide.geometry.pitch_px)
    grid = res.grid()
    assert isinstance(grid, GeneGrid) and grid.kind == "hex"
    img, aff = grid.display()
    assert img.shape[0] == 3 and aff.shape == (3, 3)
    # the dense grid's world transform is the measured one at half scale
    mg = slide.grid(genes)
    w_meas = mg.index_to_world @ np.array([10 - mg.origin[0], 20 - mg.origin[1], 1.0])
    w_dense = grid.index_to_world @ np.array([20 - grid.origin[0], 40 - grid.origin[1], 1.0])
    np.testing.assert_allclose(w_meas, w_dense)


def test_square_legacy_slide_tiny_grid(read_shared):
    slide = read_shared("st_breast_cancer_layer2")  # ~20 x 30 legacy ST grid, no pixels
    genes = slide.top_variable_genes(2)
    cfg = tiny(patch=32, window=8, max_steps=2)  # windows larger than the slide: padded, no crash
    imp = S2SImputer(cfg).fit(slide, genes)
    res = imp.impute(slide)
    assert res.kind == "square"
    use = slide.usable()
    want = dense_positions(slide.array_row[use], slide.array_col[use], "square")
    assert np.array_equal(res.dense_rows, want[0]) and np.array_equal(res.dense_cols, want[1])  # (2r+dr, 2c+dc)
    got, want = _measured_in_slide_order(slide, genes, res)
    assert np.array_equal(got, want)
    assert res.xy_px is None
    adata = res.to_anndata(slide, cfg, 1.0)
    assert "spatial" not in adata.obsm and adata.n_vars == 2


def test_stop_keeps_a_model_and_impute_works(synthetic_slide):
    genes = synthetic_slide.top_variable_genes(2)
    imp = S2SImputer(tiny(max_steps=None, budget_s=60))
    seen = []

    def cb(ev):
        seen.append(ev)
        if ev.phase == "train" and ev.step == 3:
            threading.Thread(target=imp.stop).start()

    imp.fit(synthetic_slide, genes, callback=cb)
    assert seen[-1].phase == "stopped"
    assert seen[-1].step <= 6 and seen[-1].elapsed_s < 60
    assert imp.stats["stopped"]
    res = imp.impute(synthetic_slide)
    assert np.all(np.isfinite(res.values))


def test_stop_while_the_base_is_chosen_ends_with_the_base_and_no_training(read_shared):
    """Stop during preparation (choosing the base predictor takes seconds on a real slide): no training
    window is built and no step made; the result is the base predictor, and the run says so."""
    slide = read_shared("her2st_C2")
    genes = slide.top_variable_genes(3)
    imp = S2SImputer(tiny(max_steps=None, budget_s=60))
    seen = []

    def cb(ev):
        seen.append(ev)
        if ev.message.startswith("choosing the base predictor"):
            imp.stop()  # as the user clicks Stop while the base is chosen

    imp.fit(slide, genes, callback=cb)
    assert all(ev.phase == "prepare" for ev in seen[:-1]) and seen[-1].phase == "done"
    assert "stopped before training" in seen[-1].message and "base predictor" in seen[-1].message
    assert imp.stats["stopped"] and imp.stats["steps"] == 0 and imp.alpha == 0.0 and imp.states == []
    res = imp.impute(slide)
    base = S2SImputer(tiny(blend="base", max_steps=1)).fit(slide, genes).impute(slide)
    np.testing.assert_allclose(res.values, base.values, rtol=1e-5, atol=1e-5)


def test_determinism_same_seed_same_result(synthetic_slide):
    genes = synthetic_slide.top_variable_genes(2)
    # the networks alone (a seed changes them; the base predictor does not depend on it here)
    a = S2SImputer(tiny(seed=5, blend="network")).fit(synthetic_slide, genes).impute(synthetic_slide)
    b = S2SImputer(tiny(seed=5, blend="network")).fit(synthetic_slide, genes).impute(synthetic_slide)
    c = S2SImputer(tiny(seed=6, blend="network")).fit(synthetic_slide, genes).impute(synthetic_slide)
    assert np.array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)


def test_save_load_round_trip_and_bad_files(tmp_path, synthetic_slide):
    genes = synthetic_slide.top_variable_genes(2)
    imp = S2SImputer(tiny(natural_images=True, natural_share=0.25)).fit(synthetic_slide, genes)
    p = tmp_path / "model.pt"
    imp.save(p)
    back = S2SImputer.load(p)
    assert back.config == imp.config and back.genes == genes and back.alpha == imp.alpha
    # the base predictor is refitted with the saved choice: the same maps
    np.testing.assert_allclose(back.impute(synthetic_slide).values, imp.impute(synthetic_slide).values, atol=1e-5)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(SlideError, match="bad.pt"):
        S2SImputer.load(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(SlideError, match="not a napari-s2s model"):
        S2SImputer.load(foreign)
    broken = tmp_path / "broken.pt"
    blob = torch.load(p, weights_only=True)
    blob["states"][0] = {"nope": torch.zeros(1)}
    torch.save(blob, broken)
    with pytest.raises(SlideError, match="corrupt"):
        S2SImputer.load(broken)
    with pytest.raises(SlideError):
        S2SImputer.load(tmp_path / "missing.pt")


def test_networks_that_start_from_the_base_train_save_and_load(tmp_path, read_shared):
    """``base="prior"`` on a real slide with an H&E term: one more input channel (the base predictor's
    prediction), the cascade starts from it, and a saved model imputes the same maps again."""
    slide = read_shared("her2st_C2")
    genes = slide.top_variable_genes(3)
    imp = S2SImputer(tiny(base="prior", max_steps=4, histology="on")).fit(slide, genes)
    from napari_s2s.core.s2s.engine import make_model_channels

    assert imp.n_channels == make_model_channels(tiny()) + 1 and imp.n_covariates == 0
    assert imp.histology_used  # the networks start from the smoother part; the H&E term is added after
    res = imp.impute(slide, genes)
    assert np.isfinite(res.values).all()
    p = tmp_path / "prior.pt"
    imp.save(p)
    back = S2SImputer.load(p)
    assert back.config.base == "prior"
    # the stacked base predictor (several weighted members on this slide) is saved whole and refitted
    assert len(imp.base_info["mixture"]) > 1 and back.base_info["mixture"] == imp.base_info["mixture"]
    np.testing.assert_allclose(back.impute(slide, genes).values, res.values, atol=1e-5)


def test_networks_on_the_count_loss_are_shifted_to_the_measured_log_scale(tmp_path, read_shared):
    """``loss="nb"`` on a real slide: the networks learn mean counts (``log1p`` of a mean is above the
    mean of ``log1p``); their out-of-fold excess over the measured values is subtracted, per gene, and
    saved with the model. The squared error needs no shift."""
    slide = read_shared("her2st_C2")
    genes = slide.top_variable_genes(3)
    imp = S2SImputer(tiny(loss="nb", max_steps=40, blend="network", histology="off")).fit(slide, genes)
    assert imp.net_shift.shape == (3,) and np.all(imp.net_shift != 0)
    raw = imp.impute(slide, genes).values
    p = tmp_path / "nb.pt"
    imp.save(p)
    back = S2SImputer.load(p)
    np.testing.assert_array_equal(back.net_shift, imp.net_shift)
    np.testing.assert_allclose(back.impute(slide, genes).values, raw, atol=1e-5)
    imp.net_shift = np.zeros(3, np.float32)
    unshifted = imp.impute(slide, genes)
    res = back.impute(slide, genes)
    free = ~res.measured
    # where the networks predict (not the exact measured values), the shift is what separates them
    diff = (unshifted.values[free] - res.values[free]).mean(0)
    assert np.all(np.sign(diff) == np.sign(back.net_shift))
    mse = S2SImputer(tiny(max_steps=4)).fit(slide, genes)
    assert not mse.net_shift.any()


def test_auxiliary_genes_by_spatial_signal_train_but_only_the_users_genes_are_imputed(read_shared):
    """``aux_genes``: genes of the slide with the strongest spatial signal join training (never the
    user's own), with ``gene_sampling="signal"`` drawing genes by their signal; the result and the
    saved model cover the user's genes only."""
    slide = read_shared("her2st_C2")
    genes = slide.top_variable_genes(3)
    imp = S2SImputer(tiny(aux_genes=4, gene_sampling="signal", max_steps=4, histology="off")).fit(slide, genes)
    assert imp.stats["aux_genes"] == 4 and len(set(imp.aux_genes)) == 4
    assert len(set(imp.aux_gene_names)) == 4 and not set(imp.aux_gene_names) & set(genes)
    from napari_s2s.core.s2s.engine import gene_matrix_with_targets, slide_training_arrays

    rows, cols, values, allg = slide_training_arrays(slide, genes)
    _, tcols = gene_matrix_with_targets(allg, values)
    assert not set(imp.aux_genes) & set(int(c) for c in tcols)
    res = imp.impute(slide, genes)
    assert res.values.shape[1] == 3 and np.isfinite(res.values).all()
    meas, truth = _measured_in_slide_order(slide, genes, res)
    np.testing.assert_array_equal(meas, truth)  # measured values survive exactly
    # the user's genes enter training with the same cross-gene channels as at imputation (their own
    # reconstruction: the number of components is chosen over the genes reconstructed together)
    from napari_s2s.core.s2s.train import cross_gene_reconstruction, standardise

    mu, sd = standardise(values)
    gm = gene_matrix_with_targets(allg, values)
    z, recon, gene_p, _ = imp._training_genes(rows, cols, slide.kind, values, mu, sd, allg, gm)
    assert z.shape[1] == recon.shape[1] == 7 and gene_p.sum() == pytest.approx(1.0)  # drawn by signal here
    np.testing.assert_allclose(recon[:, :3], (cross_gene_reconstruction(values, allg, 30) - mu) / sd, rtol=1e-5)
    for bad in (dict(aux_genes=-1), dict(aux_genes=2.5), dict(gene_sampling="random"), dict(aux_genes=3, base="prior")):
        with pytest.raises(ValueError):
            S2SConfig(**bad)


def test_the_base_alone_and_the_networks_alone(synthetic_slide):
    from napari_s2s.core.data.lattice import physical
    from napari_s2s.core.s2s.engine import slide_training_arrays

    slide = synthetic_slide
    genes = slide.top_variable_genes(2)
    base_only = S2SImputer(tiny(blend="base")).fit(slide, genes)
    assert base_only.alpha == 0.0
    res = base_only.impute(slide)
    # blend "base": exactly the base predictor's maps (non-learned), measured values put back
    rows, cols, values, _ = slide_training_arrays(slide, genes)
    base = base_only.base
    f_dst = None
    if base.uses_histology:  # the sample slide's image explains part of it: the H&E term at the dense grid
        f_dst = base_only._slide_features(slide)(res.dense_rows, res.dense_cols)
    b = np.maximum(base.predict(physical(res.dense_rows / 2.0, res.dense_cols / 2.0, slide.kind), f_dst), 0)
    np.testing.assert_allclose(res.model_values, b, rtol=1e-4, atol=1e-5)  # float32 weights
    nets = S2SImputer(tiny(blend="network")).fit(slide, genes)
    assert nets.alpha == 1.0 and not np.allclose(nets.impute(slide).model_values, res.model_values)


def test_networks_that_do_not_help_give_the_base(read_shared):
    """Genes that are pure noise: the networks cannot beat the base on held-out spots, so the
    result is the base predictor itself, and the verdict says so."""
    slide = read_shared("st_breast_cancer_layer2")
    rng = np.random.default_rng(0)
    genes = slide.top_variable_genes(3)
    use = slide.usable()
    perm = np.arange(len(use))
    perm[np.flatnonzero(use)] = rng.permutation(np.flatnonzero(use))
    shuffled = slide.counts[perm]  # spots shuffled: no spatial structure left
    import dataclasses

    noisy = dataclasses.replace(slide, counts=shuffled)
    imp = S2SImputer(tiny(max_steps=8, natural_images=False)).fit(noisy, genes)
    assert imp.alpha == 0.0 and "the result is the base" in imp.verdict()


def test_few_spots_still_get_the_base_and_a_zero_gene_gets_zeros(read_shared):
    import dataclasses

    slide = read_shared("her2st_C2")
    use = np.flatnonzero(slide.usable())
    keep = np.zeros(len(slide.usable()), bool)
    keep[use[:12]] = True  # 12 usable spots: too few to train networks
    small = dataclasses.replace(slide, in_tissue=keep & slide.in_tissue)
    genes = slide.top_variable_genes(2)
    events = list(S2SImputer(tiny()).fit_iter(small, genes))
    assert events[-1].phase == "done" and "too few measured spots to train" in events[-1].message
    # a gene with no counts among the measured spots: zeros, not NaN
    import scipy.sparse as sp

    mask = np.ones(slide.counts.shape[1], np.float32)
    mask[slide.gene_indices([genes[0]])[0]] = 0.0
    counts = slide.counts @ sp.diags(mask)
    zero = dataclasses.replace(slide, counts=counts)
    res = S2SImputer(tiny()).fit(zero, genes).impute(zero)
    assert np.all(np.isfinite(res.values)) and np.all(res.values[:, 0] == 0)


def test_bad_input(synthetic_slide):
    imp = S2SImputer(tiny())
    with pytest.raises(SlideError, match="unknown gene"):
        list(imp.fit_iter(synthetic_slide, ["NoSuchGene"]))
    with pytest.raises(RuntimeError):
        imp.impute(synthetic_slide, [synthetic_slide.genes[0]])


def test_preview_during_training_is_exact_at_measured_spots_and_leaves_training_unchanged(synthetic_slide):
    slide = synthetic_slide
    genes = slide.top_variable_genes(2)
    # the networks alone (weight 1): whether 5 steps of a tiny network beat the base is beside the point
    plain = S2SImputer(tiny(seed=2, max_steps=5, blend="network")).fit(slide, genes).impute(slide)
    imp = S2SImputer(tiny(seed=2, max_steps=5, blend="network"))
    assert imp.preview(slide, genes) is None  # nothing is training
    previews = []
    for ev in imp.fit_iter(slide, genes):
        if ev.phase == "train":
            previews.append((ev.step, imp.preview(slide, genes)))
    assert [s for s, _ in previews] == [1, 2, 3, 4, 5] and all(p is not None for _, p in previews)
    assert imp.preview(slide, genes) is None  # training is over
    first = previews[0][1]
    got, want = _measured_in_slide_order(slide, genes, first)
    np.testing.assert_array_equal(got, want)  # measured values exact in a preview too
    assert first.values.shape == plain.values.shape and np.all(np.isfinite(first.values))
    assert not np.array_equal(previews[0][1].values, previews[-1][1].values)  # it follows training
    # previews neither touch the weights, the random streams nor the model's train/eval mode
    after = imp.impute(slide)
    np.testing.assert_array_equal(after.values, plain.values)


def test_model_output_kept_beside_the_exact_values(synthetic_slide):
    slide = synthetic_slide
    genes = slide.top_variable_genes(2)
    res = S2SImputer(tiny(max_steps=3)).fit(slide, genes).impute(slide)
    m = res.measured
    assert res.model_values.shape == res.values.shape
    np.testing.assert_array_equal(res.model_values[~m], res.values[~m])  # same predictions between spots
    assert not np.array_equal(res.model_values[m], res.values[m])  # the network's own output at spots
    got, want = _measured_in_slide_order(slide, genes, res)
    np.testing.assert_array_equal(got, want)  # X stays exact
    exact, model = res.grid(), res.grid("model")
    assert exact.values.shape == model.values.shape
    assert np.nanmax(np.abs(exact.values - model.values)) > 0
    with pytest.raises(ValueError):
        res.grid("smooth")
    adata = res.to_anndata(slide, tiny(), 1.0)
    np.testing.assert_array_equal(adata.layers["s2s_model"], res.model_values)
    np.testing.assert_array_equal(np.asarray(adata.X), res.values)


def test_test_time_averaging_over_the_lattice_symmetries(synthetic_slide):
    slide = synthetic_slide
    genes = slide.top_variable_genes(2)
    imp = S2SImputer(tiny(blend="network", max_steps=3)).fit(slide, genes)
    one = imp.impute(slide, tta=False)  # network k uses the k-th symmetry
    avg = imp.impute(slide, tta=True)  # every network averaged over all of them
    np.testing.assert_array_equal(one.values[one.measured], avg.values[avg.measured])
    assert not np.allclose(one.values[~one.measured], avg.values[~avg.measured])


def test_the_blend_weight_is_what_the_held_out_spots_support(synthetic_slide):
    """The weight is the least-squares one lowered by ``blend_margin`` standard errors (same trained
    networks for every margin: same seed); a margin the held-out spots cannot clear gives the base,
    and the verdict says the gain was too uncertain."""
    slide = synthetic_slide
    genes = slide.top_variable_genes(6)
    fits = {m: S2SImputer(tiny(max_steps=40, blend_margin=m)).fit(slide, genes) for m in (0.0, 1.0, 1e6)}
    oof = fits[0.0].stats["oof"]
    a, se = oof["weight_ls"], oof["weight_se"]
    assert a > 0.0 and se > 0.0
    for m, imp in fits.items():
        assert imp.stats["oof"]["weight_ls"] == pytest.approx(a) and imp.stats["oof"]["weight_se"] == pytest.approx(se)
        assert imp.alpha == pytest.approx(float(np.clip(a - m * se, 0.0, 1.0)))
    assert fits[1e6].alpha == 0.0 and "too uncertain" in fits[1e6].verdict()
    base = fits[1e6].impute(slide).model_values
    # no network ran: the cost of the final maps is still estimated (a pass costs about one network's
    # out-of-fold predictions), so the dock can say how long the maps will take
    t = fits[1e6].timing
    # (the last checkpoint scoring, the out-of-fold predictions, the base, the four networks' passes)
    cost = 4 * t["oof"] + 4 * t["oof"] + t["base"] + 4 * t["oof"]
    assert "pass" not in t and fits[1e6].final_cost_s() == pytest.approx(cost)
    np.testing.assert_allclose(base, S2SImputer(tiny(blend="base")).fit(slide, genes).impute(slide).model_values)
    with pytest.raises(ValueError, match="blend_margin"):
        S2SConfig(blend_margin=-1)


def test_each_network_keeps_its_checkpoint_with_the_lowest_own_fold_error(synthetic_slide):
    """Same seed with and without checkpoint selection: the same training run (scoring draws no random
    numbers); each network ends with the weights of its best-scored checkpoint, the last ones where
    those scored best."""
    genes = synthetic_slide.top_variable_genes(3)
    last = S2SImputer(tiny(max_steps=48, checkpoints=0)).fit(synthetic_slide, genes)
    best = S2SImputer(tiny(max_steps=48, checkpoints=4)).fit(synthetic_slide, genes)
    assert last.stats["best_steps"] == [None] * 4 and last.stats["validation_s"] == 0.0
    steps = best.stats["best_steps"]
    assert all(s in (3, 6, 9, 12) for s in steps)  # scored at each quarter of the 12 steps per network
    for s, a, b in zip(steps, last.states, best.states):
        same = all(torch.equal(a[k], b[k]) for k in a)
        assert same == (s == 12)
    assert any(s < 12 for s in steps)  # on this tiny run some network scored best before the end
    with pytest.raises(ValueError, match="checkpoints"):
        S2SConfig(checkpoints=-1)


@pytest.mark.parametrize("option", ["coarse_share", "hole_share"])
def test_training_windows_one_level_sparser_or_at_the_measured_pitch_reach_the_loop(read_shared, monkeypatch, option):
    """``coarse_share``: the engine builds the four coarse slides of HER2ST C2 (its spots, its folds,
    its window size); ``hole_share``: the slide at its own pitch with random holes. The loop draws
    windows from them and from the slide's own problem; the result keeps the measured values."""
    import napari_s2s.core.s2s.train as T

    drawn = []
    sample = T._st_sample

    def spy(prob, *args, **kwargs):
        drawn.append(prob.sources is not None)
        return sample(prob, *args, **kwargs)

    monkeypatch.setattr(T, "_st_sample", spy)
    slide = read_shared("her2st_C2")
    genes = slide.top_variable_genes(3)
    imp = S2SImputer(tiny(max_steps=8, **{option: 0.5}))
    imp.fit(slide, genes)
    assert any(drawn) and not all(drawn)
    got, want = _measured_in_slide_order(slide, genes, imp.impute(slide))
    assert np.array_equal(got, want)
    assert getattr(S2SConfig.from_dict(imp.config.to_dict()), option) == 0.5


def test_checkpoint_split_scores_checkpoints_and_weighs_the_networks_on_different_spots(synthetic_slide, monkeypatch):
    """``checkpoint_split``: each fold's spots are halved (seeded); the checkpoints are scored on one
    half only and the blend weight is fitted on the other half only, so the weight is not fitted on the
    spots that picked the weights it judges."""
    import napari_s2s.core.s2s.blend as B
    import napari_s2s.core.s2s.engine as E

    calls = []
    real = B.network_oof

    def spy(members, prob, *args, **kwargs):
        out = real(members, prob, *args, **kwargs)
        calls.append((prob.folds.copy(), out.spots.copy()))
        return out

    monkeypatch.setattr(B, "network_oof", spy)
    monkeypatch.setattr(E, "network_oof", spy)
    genes = synthetic_slide.top_variable_genes(3)
    imp = S2SImputer(tiny(max_steps=16, checkpoints=2, checkpoint_split=True)).fit(synthetic_slide, genes)
    folds = calls[-1][0]
    score = B.split_halves(folds, imp.config.seed)
    for f in np.unique(folds):  # half of every fold, to one spot
        n, k = int((folds == f).sum()), int((score & (folds == f)).sum())
        assert abs(2 * k - n) <= 1
    *scoring, weighing = calls
    assert len(scoring) >= 4 and all(score[s].all() for _, s in scoring)  # 4 networks, each round
    assert len(weighing[1]) and not score[weighing[1]].any()
    assert imp.stats["oof"]["pairs"] == len(weighing[1])
    assert np.isfinite(imp.stats["oof"]["weight_ls"])
    with pytest.raises(ValueError, match="checkpoint_split"):
        S2SConfig(checkpoint_split="yes")
