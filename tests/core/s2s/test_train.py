"""Training pieces: cross-gene reconstruction, folds, the round-robin loop, stop flag, out-of-fold predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_NETWORK

from napari_s2s.core.s2s import sampling as S
from napari_s2s.core.s2s.blend import blend_weight, fold_error, kept_sources, network_oof, weight_estimate
from napari_s2s.core.s2s.engine import S2SConfig
from napari_s2s.core.s2s.natural import load_natural_images
from napari_s2s.core.s2s.train import (
    NaturalSampler,
    TrainState,
    _st_sample,
    assign_folds,
    attach_counts,
    build_problem,
    cross_gene_reconstruction,
    lr_factor,
    make_members,
    masked_loss,
    train_loop,
)

CPU = torch.device("cpu")


def _cfg(**kw):
    return S2SConfig.from_preset("fast", **{**TINY_NETWORK, "max_steps": 6, "patch": 8, **kw})


def _problem(cfg, kind="square", n=14, folds=4, prior=None):
    rng = np.random.default_rng(0)
    rr, cc = np.mgrid[0:n, 0:n]
    rr, cc = rr.ravel(), cc.ravel()
    if kind == "hex":
        keep = (rr + cc) % 2 == 0
        rr, cc = rr[keep], cc[keep]
    z = (np.sin(rr / 3.0)[:, None] + rng.normal(0, 0.3, (len(rr), 3))).astype(np.float32)
    return build_problem(rr, cc, kind, z, cfg, folds=assign_folds(len(rr), folds, rng), prior=prior)


def test_cross_gene_reconstruction_denoises_low_rank_data():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(200, 2))
    signal = scores @ rng.normal(size=(2, 400))  # many genes, as in a real panel
    noisy = signal + rng.normal(0, 0.7, signal.shape)
    rec = cross_gene_reconstruction(noisy[:, :5], noisy, max_k=20)
    assert rec.shape == (200, 5)
    assert np.mean((rec - signal[:, :5]) ** 2) < 0.5 * np.mean((noisy[:, :5] - signal[:, :5]) ** 2)


def test_folds_keep_each_network_off_its_own_spots():
    prob = _problem(_cfg(), "hex")
    assert prob.n_folds == 4 and np.bincount(prob.folds).min() >= len(prob.folds) // 4
    for f in range(4):
        for p in range(len(prob.channels)):
            lm = prob.loss_mask(p, f)
            assert not (lm & (prob.fold_img == f)).any()  # never a target of its own network
            assert not (lm & prob.kept[p]).any() and not (lm & ~prob.present).any()
            assert len(prob.starts[f][p]) > 0


def _same_fold_neighbours(phys, folds):
    """Share of each spot's 6 nearest spots in its own fold, averaged over the spots."""
    from scipy.spatial import cKDTree

    _, nn = cKDTree(phys).query(phys, k=7)
    return float(np.mean(folds[nn[:, 1:]] == folds[:, None]))


@pytest.mark.parametrize("name", ["her2st_C2", "visium_mouse_brain_dg"])
def test_spatial_block_folds_are_contiguous_balanced_and_seeded(read_shared, name):
    """``fold_layout="blocks"``: each network's held-out spots are whole regions of the slide (most of
    a spot's neighbours share its fold, against about a quarter for random folds), the folds are near
    equal, and the same seed gives the same folds."""
    from napari_s2s.core.data.lattice import measured_mask, physical

    slide = read_shared(name)
    use = slide.usable()
    r, c = slide.array_row[use], slide.array_col[use]
    meas = measured_mask(r, c, slide.kind)
    phys = physical(r[meas] // 2, c[meas] // 2, slide.kind)
    m = len(phys)
    blocks = assign_folds(m, 4, np.random.default_rng(0), phys)
    random = assign_folds(m, 4, np.random.default_rng(0))
    assert sorted(set(blocks.tolist())) == [0, 1, 2, 3]
    assert np.bincount(blocks).min() >= 0.6 * m / 4 and np.bincount(blocks).max() <= 1.4 * m / 4
    assert _same_fold_neighbours(phys, blocks) > 0.6 > 0.35 > _same_fold_neighbours(phys, random)
    np.testing.assert_array_equal(blocks, assign_folds(m, 4, np.random.default_rng(0), phys))
    # all spots at one place: no blocks to make, random folds (never an empty fold)
    same = assign_folds(12, 4, np.random.default_rng(0), np.zeros((12, 2)))
    assert np.bincount(same, minlength=4).min() == 3
    for bad in ("stripes", ""):
        with pytest.raises(ValueError):
            S2SConfig(fold_layout=bad)


def test_loop_trains_the_members_in_turn_and_honours_max_steps():
    torch.set_num_threads(1)
    cfg = _cfg(max_steps=8)
    prob = _problem(cfg)
    members = make_members(prob.n_channels, prob.n_folds, cfg, CPU, seed=0)
    before = [next(m.model.parameters()).detach().clone() for m in members]
    state = TrainState()
    events = list(train_loop(members, prob, cfg, CPU, state, lambda: False, max_steps=8))
    assert [e.step for e in events] == list(range(1, 9))
    assert state.steps == 8 and not state.stopped and [m.steps for m in members] == [2, 2, 2, 2]
    assert all(not torch.equal(b, next(m.model.parameters())) for b, m in zip(before, members))
    assert all(m.ema is not None for m in members)  # predictions use the weight average


def test_stop_flag_ends_training_at_the_next_step():
    cfg = _cfg(max_steps=None, budget_s=60)
    prob = _problem(cfg, "hex")
    members = make_members(prob.n_channels, prob.n_folds, cfg, CPU, seed=0)
    state = TrainState()
    n = 0
    for ev in train_loop(members, prob, cfg, CPU, state, lambda: n >= 2, budget_s=60):  # noqa: B023  (reads n as it changes)
        n = ev.step
    assert state.stopped and state.steps == 2 and state.live is None


def test_out_of_fold_predictions_and_the_blend_weight():
    cfg = _cfg(max_steps=4)
    prob = _problem(cfg)
    members = make_members(prob.n_channels, prob.n_folds, cfg, CPU, seed=0)
    list(train_loop(members, prob, cfg, CPU, TrainState(), lambda: False, max_steps=4))
    oof = network_oof(members, prob, CPU)
    pix = prob.spot_pixels
    # every (spot, phase) pair where the spot is not kept, each predicted by the spot's own fold network
    expected = sum(int((~prob.kept[p][pix[:, 0], pix[:, 1]]).sum()) for p in range(len(prob.channels)))
    assert len(oof.spots) == expected and oof.network.shape == (expected, prob.genes)
    assert not any(prob.kept[p][pix[s, 0], pix[s, 1]] for s, p in zip(oof.spots, oof.phases))
    src = kept_sources(prob, 0)
    assert prob.kept[0][pix[src, 0], pix[src, 1]].all()
    # the blend weight: least squares in [0, 1]
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(50, 3))
    base = truth + rng.normal(0, 1.0, truth.shape)
    w = np.ones(3)
    assert blend_weight(truth, base, truth, w) == 1.0  # perfect networks
    assert blend_weight(truth, base, base - 2.0 * (truth - base), w) == 0.0  # wrong way: clipped at 0
    assert blend_weight(truth, base, base, w) == 0.0  # identical: nothing to choose
    assert 0.3 < blend_weight(truth, base, truth + rng.normal(0, 1.0, truth.shape), w) < 0.7  # equally good


def test_the_weight_standard_error_and_its_margin():
    """The cluster-robust standard error matches the spread of the weight over repeated draws; a
    spot repeated in several rows counts once; the margin lowers the weight by that many errors."""
    rng = np.random.default_rng(1)

    def draw(n, reps=1):
        truth = rng.normal(size=(n, 4))
        base = truth + rng.normal(0, 1.0, truth.shape)
        # network - base = 0.6 (truth - base) + noise of sd 1: the best weight is 0.6 / (0.36 + 1)
        net = base + 0.6 * (truth - base) + rng.normal(0, 1.0, truth.shape)
        spots = np.arange(n)
        if reps > 1:  # the same spot in several rows (phases): the rows are copies, no new evidence
            truth, base, net, spots = (np.repeat(a, reps, axis=0) for a in (truth, base, net, spots))
        return truth, base, net, np.ones(4), spots

    est = [weight_estimate(*draw(60)) for _ in range(400)]
    a, se = np.array(est).T
    assert abs(a.mean() - 0.6 / 1.36) < 0.03
    assert 0.8 < se.mean() / a.std() < 1.25  # the error describes the spread across draws
    t, b, n, w, spots = draw(60, reps=3)
    a3, se_spots = weight_estimate(t, b, n, w, spots)
    _, se_rows = weight_estimate(t, b, n, w)
    assert se_spots > 1.5 * se_rows  # rows of one spot are not independent evidence
    assert blend_weight(t, b, n, w, spots, margin=0.0) == pytest.approx(np.clip(a3, 0, 1))
    assert blend_weight(t, b, n, w, spots, margin=2.0) == pytest.approx(np.clip(a3 - 2 * se_spots, 0, 1))
    # a weight the spots do not support goes to the base: 12 spots, a noisy network
    t, b, n, w, spots = draw(12)
    n = b + 0.1 * (t - b) + rng.normal(0, 1.0, t.shape)
    assert blend_weight(t, b, n, w, spots, margin=2.0) == 0.0


def test_the_prior_of_each_phase_comes_from_its_kept_spots_only():
    """Training inputs carry the base predictor's prediction from the phase's kept spots, never from
    the spots the networks must predict; the cascade starts from that channel."""
    from napari_s2s.core.s2s.train import make_model

    calls = []

    def prior(sources, r, c):
        calls.append(np.sort(sources))
        return np.full((len(r), 3), float(len(calls)))

    cfg = _cfg(base="prior")
    prob = _problem(cfg, "hex", prior=prior)
    assert len(calls) == len(prob.channels) > 1
    i = S.channel_index("prior", len(cfg.sigmas), cfg.cross_gene)
    assert prob.n_channels == S.n_input_channels(len(cfg.sigmas), cfg.cross_gene, prior=True)
    nodes = prob.channels[0][0, 2] > 0
    for p, src in enumerate(calls):
        np.testing.assert_array_equal(src, kept_sources(prob, p))  # the kept spots, and only them
        assert (prob.channels[p][:, i][:, nodes] == p + 1).all()
    assert make_model(prob.n_channels, cfg).spec.base_channel == i
    with pytest.raises(ValueError, match="prior"):
        _problem(cfg, "hex")  # base "prior" without the base predictor's function
    # natural-image crops get the same channel count (their prior is their smoother)
    ch, _, _ = NaturalSampler(load_natural_images(limit=1), "hex", 8, cfg).sample(np.random.default_rng(0))
    assert ch.shape[0] == prob.n_channels


def test_natural_images_on_the_slide_lattice():
    imgs = load_natural_images(limit=2)
    assert imgs and all(im.dtype == np.float32 and 0 <= im.min() and im.max() <= 1 for im in imgs)
    cfg = _cfg()
    ns = NaturalSampler(imgs, "hex", 8, cfg)
    ch, tg, lm = ns.sample(np.random.default_rng(0))
    assert ch.shape == (S.n_input_channels(len(cfg.sigmas), True), 8, 8) and tg.shape == (1, 8, 8)
    nodes = ch[2] > 0
    kept = ch[1] > 0
    assert not (lm[0] & kept).any() and not (lm[0] & ~nodes).any()  # targets: non-kept lattice nodes
    assert 0.15 < kept.sum() / nodes.sum() < 0.35


def test_natural_images_at_several_sizes():
    """``natural_sizes``: every image at each size (its longest side), the same picture at several
    scales per lattice pitch; one size gives what the default loader gives."""
    one = load_natural_images(limit=2)
    two = load_natural_images(max_side=(80, 160), limit=2)
    assert len(two) == 2 * len(one)
    assert [max(im.shape) for im in two] == [80, 160] * len(one)
    for small, large, ref in zip(two[::2], two[1::2], one):
        np.testing.assert_array_equal(large, ref)
        assert abs(small.mean() - large.mean()) < 0.02  # the same picture, downscaled further
    assert S2SConfig(natural_sizes=[80, 160]).natural_sizes == (80, 160)
    assert S2SConfig.from_dict(S2SConfig(natural_sizes=(80, 320)).to_dict()).natural_sizes == (80, 320)
    for bad in ((), (16,), (160.5,), "160", (True,)):
        with pytest.raises(ValueError, match="natural_sizes"):
            S2SConfig(natural_sizes=bad)


def test_time_the_consumer_holds_the_loop_is_not_charged_to_the_budget():
    import time

    torch.set_num_threads(1)
    cfg = _cfg(max_steps=None, budget_s=0.6)
    prob = _problem(cfg)
    members = make_members(prob.n_channels, prob.n_folds, cfg, CPU, seed=0)
    state = TrainState()
    t0 = time.perf_counter()
    held = 0.0
    for ev in train_loop(members, prob, cfg, CPU, state, lambda: False, budget_s=0.6):  # noqa: B007  (the last one is read below)
        time.sleep(0.2)  # e.g. a preview map computed between two events
        held += 0.2
    wall = time.perf_counter() - t0
    assert ev.elapsed_s < 0.6 + 0.5 and state.seconds <= wall - held + 0.05
    assert state.steps >= 4, "the pauses ate the training budget"


def test_genes_are_drawn_by_their_probabilities_and_auxiliary_genes_are_never_predicted():
    from napari_s2s.core.s2s.blend import oof_genes
    from napari_s2s.core.s2s.train import _st_sample

    cfg = _cfg(max_steps=4)
    prob = _problem(cfg)  # 3 genes
    rng = np.random.default_rng(0)
    prob.gene_p = np.array([0.0, 1.0, 0.0])
    for _ in range(5):
        ch, tg, lm = _st_sample(prob, rng, augment=False)
        # the drawn window is gene 1's: its target is gene 1's values at the window
        assert any(
            np.array_equal(tg[0], prob.target[1, y : y + 8, x : x + 8]) for per in prob.starts[0] for y, x in per
        )
        assert not any(
            np.array_equal(tg[0], prob.target[0, y : y + 8, x : x + 8]) for per in prob.starts[0] for y, x in per
        )
    prob.gene_p, prob.targets = None, 2  # gene 2 is auxiliary: trained on, never predicted or weighed
    assert prob.n_targets == 2 and list(oof_genes(prob, 4)) == [0, 1]
    members = make_members(prob.n_channels, prob.n_folds, cfg, CPU, seed=0)
    assert network_oof(members, prob, CPU).network.shape[1] == 2


def test_gene_mixing_draws_a_convex_mixture_of_two_genes_with_consistent_channels():
    from napari_s2s.core.s2s.train import _st_sample

    cfg = _cfg(max_steps=4)
    prob = _problem(cfg)  # 3 genes
    for seed in range(6):
        ch, tg, lm = _st_sample(prob, np.random.default_rng(seed), augment=False, mix=1.0)
        # replay the draws: phase, gene, window, the coin, the second gene, the weight
        rng = np.random.default_rng(seed)
        valid = [i for i, s in enumerate(prob.starts[0]) if len(s)]
        p = valid[int(rng.integers(len(valid)))]
        g = int(rng.integers(prob.genes))
        y, x = prob.starts[0][p][int(rng.integers(len(prob.starts[0][p])))]
        assert rng.random() < 1.0
        h, w = int(rng.integers(prob.genes)), float(rng.random())
        win = (slice(y, y + 8), slice(x, x + 8))
        want_ch = w * prob.channels[p][g][(slice(None), *win)] + (1 - w) * prob.channels[p][h][(slice(None), *win)]
        np.testing.assert_allclose(ch, want_ch, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(tg[0], w * prob.target[g][win] + (1 - w) * prob.target[h][win], rtol=1e-6)
        np.testing.assert_array_equal(lm[0], prob.loss_mask(p, 0)[win])
    # without mixing, a sample is one gene's window
    ch, tg, _ = _st_sample(prob, np.random.default_rng(0), augment=False, mix=0.0)
    assert any(
        np.array_equal(tg[0], prob.target[k, y : y + 8, x : x + 8])
        for k in range(3)
        for per in prob.starts[0]
        for y, x in per
    )
    with pytest.raises(ValueError, match="gene_mix"):
        _cfg(gene_mix=1.5)


def test_learning_rate_decays_over_the_budget():
    assert lr_factor("none", 0.7) == 1.0
    assert lr_factor("linear", 0.0) == 1.0 and lr_factor("linear", 0.25) == pytest.approx(0.75)
    assert lr_factor("linear", 1.0) == 0.0 and lr_factor("cosine", 0.5) == pytest.approx(0.5)
    cfg = _cfg(max_steps=8, lr_decay="linear")
    prob = _problem(cfg)
    members = make_members(prob.n_channels, prob.n_folds, cfg, CPU, seed=0)
    seen = []
    for _ in train_loop(members, prob, cfg, CPU, TrainState(), lambda: False, max_steps=8):
        seen.append(members[(len(seen)) % 4].opt.param_groups[0]["lr"])
    # step k (0-based) is taken at progress k / 8 of the step limit
    assert seen == pytest.approx([cfg.lr * (1 - k / 8) for k in range(8)])
    with pytest.raises(ValueError, match="lr_decay"):
        _cfg(lr_decay="step")


def test_checkpoint_selection_keeps_each_members_best_weights():
    torch.set_num_threads(1)
    cfg = _cfg(max_steps=16)
    prob = _problem(cfg)
    members = make_members(prob.n_channels, prob.n_folds, cfg, CPU, seed=0)
    scores = {m.fold: iter([3.0, 1.0, 2.0, 5.0, 4.0]) for m in members}  # lowest at the second scoring
    snapshots = {m.fold: [] for m in members}

    def validate(mem):
        snapshots[mem.fold].append((mem.steps, {k: v.clone() for k, v in mem.evaluated.state_dict().items()}))
        return next(scores[mem.fold])

    state = TrainState()
    list(train_loop(members, prob, cfg, CPU, state, lambda: False, max_steps=16, validate=validate, checkpoints=4))
    # scored after rounds at 1/4, 2/4, 3/4 of the steps (4 steps each = 1 per member), then at the end
    assert state.validations == 4 and [s for s, _ in snapshots[0]] == [1, 2, 3, 4]
    for m in members:
        step, kept = snapshots[m.fold][1]
        assert m.best_step == step == 2 and m.best_error == 1.0
        assert all(torch.equal(v, kept[k]) for k, v in m.evaluated.state_dict().items())
        assert not all(torch.equal(v, snapshots[m.fold][-1][1][k]) for k, v in m.evaluated.state_dict().items())


def test_shared_checkpoint_selection_keeps_every_members_weights_of_one_scoring():
    torch.set_num_threads(1)
    cfg = _cfg(max_steps=16, checkpoint_scope="shared")
    prob = _problem(cfg)
    members = make_members(prob.n_channels, prob.n_folds, cfg, CPU, seed=0)
    # member 0 alone is best at the first scoring; the members' mean is lowest at the third
    table = {0: [0.5, 3.0, 2.0, 3.0], 1: [3.0, 2.0, 1.0, 3.0], 2: [3.0, 2.0, 1.0, 3.0], 3: [3.0, 2.0, 1.0, 3.0]}
    scores = {f: iter(v) for f, v in table.items()}
    snapshots = {m.fold: [] for m in members}

    def validate(mem):
        snapshots[mem.fold].append({k: v.clone() for k, v in mem.evaluated.state_dict().items()})
        return next(scores[mem.fold])

    state = TrainState()
    list(train_loop(members, prob, cfg, CPU, state, lambda: False, max_steps=16, validate=validate, checkpoints=4))
    assert state.validations == 4 and state.best_shared_error == pytest.approx(np.mean([2.0, 1.0, 1.0, 1.0]))
    for m in members:
        assert m.best_step == 3 and m.best_error == table[m.fold][2]
        assert all(torch.equal(v, snapshots[m.fold][2][k]) for k, v in m.evaluated.state_dict().items())
    with pytest.raises(ValueError, match="checkpoint_scope"):
        _cfg(checkpoint_scope="fold")


def test_fold_error_scores_a_member_on_its_own_fold_only():
    cfg = _cfg(max_steps=4)
    prob = _problem(cfg)
    members = make_members(prob.n_channels, prob.n_folds, cfg, CPU, seed=0)
    list(train_loop(members, prob, cfg, CPU, TrainState(), lambda: False, max_steps=4))
    oof = network_oof(members[1:2], prob, CPU)
    assert set(prob.folds[oof.spots]) == {1}
    pix = prob.spot_pixels[oof.spots]
    truth = prob.target[:, pix[:, 0], pix[:, 1]].T
    assert fold_error(members[1], prob, CPU) == pytest.approx(float(np.mean((oof.network - truth) ** 2)), rel=1e-5)


def test_very_large_images_score_each_network_in_fewer_phases(monkeypatch):
    """A slide whose network passes would cost more than the out-of-fold pixel budget (Visium HD)
    keeps its spots and the minimum genes, and each network predicts in its own phases instead of all
    four: the rows still cover every phase, and checkpoint scores use the same phases every time."""
    from napari_s2s.core.s2s import blend

    cfg = _cfg(max_steps=4)
    prob = _problem(cfg)  # 3 genes, 4 phases, 4 folds
    members = make_members(prob.n_channels, prob.n_folds, cfg, CPU, seed=0)
    list(train_loop(members, prob, cfg, CPU, TrainState(), lambda: False, max_steps=4))
    n_ph = len(prob.channels)
    assert blend.oof_phase_count(prob, 4) == n_ph  # small slides: every phase, as before
    pixels = prob.target.shape[1] * prob.target.shape[2]
    monkeypatch.setattr(blend, "OOF_PIXELS", 4 * blend.OOF_MIN_GENES * pixels)  # room for one phase each
    assert blend.oof_phase_count(prob, 4) == 1 and len(blend.oof_genes(prob, 4)) == 3
    oof = network_oof(members, prob, CPU, n_phases=1)
    for mem in members:
        mine = prob.folds[oof.spots] == mem.fold
        assert mine.any() and set(oof.phases[mine]) == {mem.fold % n_ph}
    assert set(oof.phases) == set(range(min(4, n_ph)))
    full = network_oof(members, prob, CPU)
    assert len(oof.spots) < len(full.spots) and set(oof.spots) <= set(full.spots)
    one = network_oof(members[2:3], prob, CPU, n_phases=1)
    pix = prob.spot_pixels[one.spots]
    truth = prob.target[:, pix[:, 0], pix[:, 1]].T
    err = float(np.mean((one.network - truth) ** 2))
    assert fold_error(members[2], prob, CPU, n_phases=1) == pytest.approx(err, rel=1e-5)
    assert fold_error(members[2], prob, CPU, n_phases=1) != pytest.approx(fold_error(members[2], prob, CPU), rel=1e-6)


def test_kept_dropout_rebuilds_a_window_from_fewer_kept_spots(read_shared):
    """``kept_dropout``: a window's inputs rebuilt from a subset of the phase's kept spots. With none
    dropped they are the precomputed inputs (the same bandwidths; only the density channels are
    normalised over the window's context instead of the whole image); dropped spots vanish from the
    kept channels and become targets, never of their own fold's network (HER2ST C2, cross-gene
    channels on)."""
    from napari_s2s.core.evaluation.benchmark import build_holdout
    from napari_s2s.core.methods.s2s import to_lattice
    from napari_s2s.core.s2s.engine import cross_gene_matrix
    from napari_s2s.core.s2s.train import _dropped_window, standardise

    task = build_holdout(read_shared("her2st_C2"), n_genes=8, seed=0)[0]
    lr, lc, _, _ = to_lattice(task)
    values = np.asarray(task.measured_values, np.float32)
    mu, sd = standardise(values)
    recon = (cross_gene_reconstruction(values, cross_gene_matrix(task.measured_all_genes), 30) - mu) / sd
    cfg = S2SConfig.from_preset("fast", kept_dropout=0.3)
    folds = assign_folds(len(lr), 4, np.random.default_rng(0))
    prob = build_problem(lr, lc, task.kind, (values - mu) / sd, cfg, recon.astype(np.float32), folds=folds)
    n_sig = len(cfg.sigmas)
    dens = slice(3 + 2 * n_sig, 3 + 3 * n_sig)
    others = [c for c in range(prob.n_channels) if not dens.start <= c < dens.stop]
    rng = np.random.default_rng(1)
    P, checked, dropped = prob.patch, 0, 0
    for f in range(4):
        for p in range(len(prob.channels)):
            for y, x in prob.starts[f][p][:3]:
                g = int(rng.integers(8))
                full = prob.channels[p][g][:, y : y + P, x : x + P]
                ch, lm = _dropped_window(prob, rng, p, g, y, x, f, 0.0)
                np.testing.assert_allclose(ch[others], full[others], rtol=1e-5, atol=1e-5)
                np.testing.assert_array_equal(lm[0], prob.loss_mask(p, f)[y : y + P, x : x + P])
                ch, lm = _dropped_window(prob, rng, p, g, y, x, f, 0.5)
                was, now = full[1] > 0, ch[1] > 0
                assert not (now & ~was).any()  # only ever fewer kept spots
                gone = was & ~now
                assert (ch[0][gone] == 0).all()
                own = prob.fold_img[y : y + P, x : x + P] == f
                np.testing.assert_array_equal(lm[0], prob.loss_mask(p, f)[y : y + P, x : x + P] | (gone & ~own))
                checked, dropped = checked + 1, dropped + int(gone.sum())
    assert checked >= 8 and dropped > 0
    for bad in (dict(kept_dropout=0.95), dict(kept_dropout=-0.1), dict(kept_dropout=0.2, base="prior")):
        with pytest.raises(ValueError):
            S2SConfig(**bad)


def _count_problem(read_shared, loss="poisson", **kw):
    """HER2ST C2's measured spots (its 4 most variable genes) as a count-loss training problem."""
    from napari_s2s.core.s2s.train import standardise

    slide = read_shared("her2st_C2")
    use = slide.usable()
    v = slide.lognorm(slide.top_variable_genes(4))
    mu, sd = standardise(v)
    cfg = _cfg(loss=loss, **kw)
    rng = np.random.default_rng(0)
    prob = build_problem(
        slide.array_row[use], slide.array_col[use], slide.kind, (v - mu) / sd, cfg, folds=assign_folds(len(v), 2, rng)
    )
    attach_counts(prob, mu, sd, size_factors=slide.size_factors(), dispersion=loss == "nb")
    return slide, v, mu, sd, cfg, prob


@pytest.mark.parametrize("loss", ["poisson", "nb"])
def test_the_count_loss_sees_counts_and_library_sizes(read_shared, loss):
    slide, v, mu, sd, cfg, prob = _count_problem(read_shared, loss)
    c, pix = prob.counts, prob.spot_pixels
    # the offset turns the standardised targets back into the measured log-normalised values
    back = prob.target[:, pix[:, 0], pix[:, 1]] * sd[:, None] + c["offset"][0][:, pix[:, 0], pix[:, 1]]
    np.testing.assert_allclose(back.T, v, atol=1e-5)
    np.testing.assert_allclose(c["size"][pix[:, 0], pix[:, 1]], slide.size_factors(), rtol=1e-6)
    assert (c["size"][~prob.present] == 0).all() and (c["kappa"] > 0).all()
    # the measured counts come back as integers: value = log1p(count * size factor)
    counts = np.expm1(v) / slide.size_factors()[:, None]
    np.testing.assert_allclose(counts, np.round(counts), atol=2e-3 * max(1.0, counts.max()))
    if loss == "nb":  # real counts are over-dispersed around a constant rate
        assert (c["theta"] < 100).all()
    ch, tg, lm = _st_sample(prob, np.random.default_rng(1), True)
    assert tg.shape == (6, prob.patch, prob.patch)
    # the deviance is ~0 at the measured counts and grows away from them, as the squared error does
    t = torch.from_numpy(tg[None])
    m = torch.from_numpy(lm[None])
    at = float(masked_loss([t[:, :1]], t, m, loss))
    off = [float(masked_loss([t[:, :1] + d], t, m, loss)) for d in (0.3, -0.3, 1.0)]
    assert at < 0.05 * min(off) and off[2] > off[0]
    # a natural sample (no size factor) takes the squared error
    nat = t.clone()
    nat[:, 2] = -1.0
    assert float(masked_loss([t[:, :1] + 0.5], nat, m, loss)) == pytest.approx(0.25, rel=1e-5)
    with pytest.raises(ValueError, match="size_factors"):
        attach_counts(prob, mu, sd, size_factors=np.zeros(len(v)))


def test_the_negative_binomial_deviance_tends_to_the_poisson_one():
    from napari_s2s.core.s2s.train import POISSON_THETA, count_deviance

    c = torch.tensor([0.0, 1.0, 3.0, 10.0, 40.0])
    mean = torch.tensor([0.5, 2.0, 3.0, 6.0, 50.0])
    poisson = 2 * (torch.special.xlogy(c, c / mean) - (c - mean))
    np.testing.assert_allclose(count_deviance(c, mean, torch.tensor(POISSON_THETA)), poisson, rtol=1e-3, atol=1e-4)
    # over-dispersion: a far-off mean costs less than under Poisson
    assert (count_deviance(c, mean, torch.tensor(2.0)) <= poisson + 1e-6).all()


def test_networks_train_on_the_count_loss(read_shared):
    *_, cfg, prob = _count_problem(read_shared, "nb", natural_share=0.25)
    members = make_members(prob.n_channels, prob.n_folds, cfg, CPU, 0)
    nat = NaturalSampler(load_natural_images(limit=2), prob.kind, prob.patch, cfg)
    state = TrainState()
    list(train_loop(members, prob, cfg, CPU, state, lambda: False, nat, None, 6))
    assert state.steps == 6 and all(np.isfinite(state.losses))
    with pytest.raises(ValueError, match="gene_mix"):
        _cfg(loss="poisson", gene_mix=0.5)


def test_coarse_problems_are_the_cosets_of_the_measured_lattice_at_double_pitch(read_shared):
    """``coarse_share``: each coset of the measured lattice's keep-1/4 sub-lattice becomes a slide of
    its own (the Visium dentate gyrus crop, a hex lattice): its spots are exactly that coset's, with
    their values and folds, on a lattice of the same kind (every spot a node of it), in windows of the
    slide's size; the four cosets together hold every measured spot once."""
    from napari_s2s.core.evaluation.benchmark import build_holdout
    from napari_s2s.core.methods.s2s import to_lattice
    from napari_s2s.core.s2s.train import coarse_problems, standardise

    task = build_holdout(read_shared("visium_mouse_brain_dg"), n_genes=4, seed=0)[0]
    lr, lc, _, _ = to_lattice(task)
    assert task.kind == "hex"
    values = np.asarray(task.measured_values, np.float32)
    mu, sd = standardise(values)
    z = (values - mu) / sd
    cfg = _cfg(coarse_share=0.25)
    folds = assign_folds(len(lr), 4, np.random.default_rng(0))
    prob = build_problem(lr, lc, task.kind, z, cfg, folds=folds)
    coarse = coarse_problems(lr, lc, task.kind, z, cfg, None, None, folds, None, prob.patch)
    assert len(coarse) == 4
    parity = int((lr[0] + lc[0]) % 2)
    seen = np.zeros(len(lr), int)
    nodes = S.channel_index("nodes", len(cfg.sigmas), cfg.cross_gene)
    for (r0, c0), cp in zip(S.phase_origins("hex", parity), coarse):
        sel = S.keep_quarter(lr, lc, "hex", (r0, c0))
        seen += sel
        r2, c2 = (lr[sel] - r0) // 2, (lc[sel] - c0) // 2
        assert len(set((r2 + c2) % 2)) == 1  # a hex lattice again
        assert cp.patch == prob.patch and cp.genes == prob.genes
        assert int(cp.present.sum()) == int(sel.sum())
        py, px = cp.spot_pixels[:, 0], cp.spot_pixels[:, 1]
        np.testing.assert_array_equal(cp.target[:, py, px].T, z[sel])
        np.testing.assert_array_equal(cp.fold_img[py, px], folds[sel])
        np.testing.assert_array_equal(cp.sources, np.flatnonzero(sel))
        assert (cp.channels[0][0, nodes][py, px] == 1).all()
        for p, kept in enumerate(cp.kept):  # a quarter of the coset kept, never a spot outside it
            assert not (kept & ~cp.present).any() and 0 < kept.sum() < cp.present.sum()
            for f in range(4):
                assert not (cp.loss_mask(p, f) & (cp.fold_img == f)).any()
        assert any(len(s) for per in cp.starts for s in per)
    np.testing.assert_array_equal(seen, 1)


def test_the_coarse_share_of_windows_and_its_settings():
    """A slide window comes from the coarser level with probability ``coarse_share``; at 0 no random
    number is drawn (the default's stream is unchanged); training with it runs and the settings it
    cannot combine with are refused."""
    from napari_s2s.core.s2s.train import _source, coarse_problems

    cfg = _cfg(coarse_share=0.5)
    prob = _problem(cfg, n=20)
    rr, cc = np.nonzero(prob.present)
    z = prob.target[:, rr, cc].T
    prob.coarse = coarse_problems(rr, cc, "square", z, cfg, None, None, prob.folds, None, prob.patch)
    assert len(prob.coarse) == 4
    rng = np.random.default_rng(3)
    picks = [_source(prob, prob.coarse, 0.5, rng) is not prob for _ in range(4000)]
    assert 0.46 < np.mean(picks) < 0.54
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    assert _source(prob, prob.coarse, 0.0, a) is prob
    assert a.random() == b.random()
    members = make_members(prob.n_channels, prob.n_folds, cfg, CPU, 0)
    state = TrainState()
    list(train_loop(members, prob, cfg, CPU, state, lambda: False, max_steps=8))
    assert state.steps == 8 and np.isfinite(state.losses).all()
    for bad in (dict(coarse_share=1.0), dict(coarse_share=-0.1), dict(coarse_share=0.2, loss="nb")):
        with pytest.raises(ValueError):
            S2SConfig(**bad)


def test_hole_problems_keep_the_measured_lattice_but_a_random_share_of_its_spots(read_shared):
    """``hole_share``: the training inputs at the measured pitch itself (HER2ST C2, a square lattice).
    Each phase keeps every measured spot but about ``hole_rate`` of them, drawn anew per phase and
    seeded; the holes are the targets, never those of a network's own fold; the values and folds are
    the slide's; the same seed draws the same holes, another seed others."""
    from napari_s2s.core.evaluation.benchmark import build_holdout
    from napari_s2s.core.methods.s2s import to_lattice
    from napari_s2s.core.s2s.train import hole_problems, standardise

    task = build_holdout(read_shared("her2st_C2"), n_genes=3, seed=0)[0]
    lr, lc, _, _ = to_lattice(task)
    values = np.asarray(task.measured_values, np.float32)
    mu, sd = standardise(values)
    z = (values - mu) / sd
    cfg = _cfg(hole_share=0.25, hole_rate=0.25)
    folds = assign_folds(len(lr), 4, np.random.default_rng(0))
    prob = build_problem(lr, lc, task.kind, z, cfg, folds=folds)
    (hp,) = hole_problems(lr, lc, task.kind, z, cfg, None, None, folds, None, prob.patch, seed=0)
    assert hp.patch == prob.patch and len(hp.kept) == 4
    np.testing.assert_array_equal(hp.present, prob.present)
    py, px = hp.spot_pixels[:, 0], hp.spot_pixels[:, 1]
    np.testing.assert_array_equal(hp.target[:, py, px].T, z)
    np.testing.assert_array_equal(hp.fold_img[py, px], folds)
    holes = [hp.present & ~k for k in hp.kept]
    for p, (k, h) in enumerate(zip(hp.kept, holes)):
        assert not (k & ~hp.present).any()
        assert 0 < h.sum() < hp.present.sum()
        for f in range(4):
            lm = hp.loss_mask(p, f)
            np.testing.assert_array_equal(lm, h & (hp.fold_img != f))
    assert 0.15 < np.mean([h.sum() for h in holes]) / hp.present.sum() < 0.35  # 4 x 46 draws: about a quarter
    assert len({h.tobytes() for h in holes}) == 4
    (again,) = hole_problems(lr, lc, task.kind, z, cfg, None, None, folds, None, prob.patch, seed=0)
    (other,) = hole_problems(lr, lc, task.kind, z, cfg, None, None, folds, None, prob.patch, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(again.kept, hp.kept))
    assert not all(np.array_equal(a, b) for a, b in zip(other.kept, hp.kept))
    # the kept spots' smoothers are the inputs: a hole's value is not among them
    kept_ch = S.channel_index("kept", len(cfg.sigmas), cfg.cross_gene)
    assert (hp.channels[0][:, kept_ch][:, holes[0]] == 0).all()
    for bad in (dict(hole_share=1.0), dict(hole_rate=0.9), dict(hole_share=0.2, coarse_share=0.2)):
        with pytest.raises(ValueError):
            S2SConfig(**bad)
