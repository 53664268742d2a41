"""Masks, lattice-keeping augmentation, input channels and leak-freedom of training batches."""

from __future__ import annotations

import numpy as np
import pytest

from napari_s2s.core.data.lattice import measured_mask
from napari_s2s.core.s2s import sampling as S
from napari_s2s.core.s2s.engine import S2SConfig
from napari_s2s.core.s2s.train import _st_sample, assign_folds, build_problem


def _nodes(kind, h=24, w=24):
    rr, cc = np.mgrid[0:h, 0:w]
    rr, cc = rr.ravel(), cc.ravel()
    if kind == "hex":
        keep = (rr + cc) % 2 == 0
        rr, cc = rr[keep], cc[keep]
    return rr, cc


@pytest.mark.parametrize("kind", ["square", "hex"])
def test_keep_quarter_is_the_benchmark_mask_and_phases_partition(kind):
    rr, cc = _nodes(kind)
    assert np.array_equal(S.keep_quarter(rr, cc, kind), measured_mask(rr, cc, kind))
    masks = [S.keep_quarter(rr, cc, kind, ph) for ph in S.phase_origins(kind)]
    total = np.sum(masks, axis=0)
    assert np.all(total == 1)  # four cosets, each node in exactly one
    for m in masks:
        assert m.sum() == len(rr) // 4


@pytest.mark.parametrize("kind", ["square", "hex"])
def test_each_level_is_the_previous_scaled_by_two(kind):
    # measured lattice nodes (r, c) sit at (2r, 2c) of the dense lattice, which is its keep-1/4 mask;
    # and the sparser level of the measured lattice is the same pattern one level down
    rr, cc = _nodes(kind, 12, 12)
    coarse = set(zip((2 * rr).tolist(), (2 * cc).tolist()))
    dr, dc = _nodes(kind, 24, 24)
    keep = S.keep_quarter(dr, dc, kind)
    assert set(zip(dr[keep].tolist(), dc[keep].tolist())) == coarse


@pytest.mark.parametrize("kind", ["square", "hex"])
def test_symmetries_map_lattice_and_sublattice_onto_themselves(kind):
    h = w = 16
    nodes = S.node_mask((h, w), (0, 0), kind)
    rr, cc = np.mgrid[0:h, 0:w]
    syms = S.symmetries(kind)
    assert len(syms) == (8 if kind == "square" else 4)
    for ph in S.phase_origins(kind):
        sub = S.keep_quarter(rr, cc, kind, ph) & nodes
        for sym in syms:
            n2 = S.apply_symmetry(nodes, sym)
            s2 = S.apply_symmetry(sub, sym)
            parity = int(n2[0, 0] == 0) if kind == "hex" else 0
            assert np.array_equal(n2, S.node_mask((h, w), (0, 0), kind, parity))
            # the transformed sub-lattice is again one of the four cosets
            ok = any(np.array_equal(s2, S.keep_quarter(rr, cc, kind, p2) & n2) for p2 in S.phase_origins(kind, parity))
            assert ok, (ph, sym)


def test_smoothers_reproduce_constants_and_respect_kept_samples():
    kind = "hex"
    h, w = 20, 30
    nodes = S.node_mask((h, w), (0, 0), kind)
    rr, cc = np.mgrid[0:h, 0:w]
    kept = S.keep_quarter(rr, cc, kind) & nodes
    vals = np.full((2, h, w), 3.0, np.float32)
    vals[1][~kept] = 1e6  # values off the kept samples are never read
    vals[1][kept] = 3.0
    sm, dens = S.smooth_kept(vals, kept, kind)
    assert sm.shape == (2, len(S.DEFAULT_SIGMAS), h, w)
    np.testing.assert_allclose(sm, 3.0, rtol=1e-4)
    assert dens.max() == pytest.approx(1.0)
    ch = S.make_channels(vals, kept, nodes, kind, cross_gene=True)
    assert ch.shape[1] == S.n_input_channels(len(S.DEFAULT_SIGMAS), True)
    assert np.abs(ch).max() < 10


def test_the_prior_channel_carries_the_base_prediction_or_else_the_smoother():
    kind = "square"
    rng = np.random.default_rng(0)
    h, w = 12, 14
    nodes = S.node_mask((h, w), (0, 0), kind)
    rr, cc = np.mgrid[0:h, 0:w]
    kept = S.keep_quarter(rr, cc, kind) & nodes
    vals = rng.normal(size=(2, h, w)).astype(np.float32)
    prior = rng.normal(size=(2, h, w)).astype(np.float32)
    n_sig = len(S.DEFAULT_SIGMAS)
    ch = S.make_channels(vals, kept, nodes, kind, cross_gene=True, use_prior=True, prior=prior)
    assert ch.shape[1] == S.n_input_channels(n_sig, True, prior=True) == S.n_input_channels(n_sig, True) + 1
    i = S.channel_index("prior", n_sig, True)
    np.testing.assert_array_equal(ch[:, i], prior)
    without = S.make_channels(vals, kept, nodes, kind, cross_gene=True)
    np.testing.assert_array_equal(np.delete(ch, i, axis=1), without)  # the other channels are unchanged
    # natural images have no base predictor: the prior is the middle smoother
    nat = S.make_channels(vals, kept, nodes, kind, cross_gene=True, use_prior=True)
    np.testing.assert_array_equal(nat[:, i], nat[:, S.channel_index("smooth", n_sig, True)])


def test_window_starts_adapt_to_small_images():
    wgt = np.zeros((10, 10), bool)
    wgt[2:5, 2:5] = True
    st = S.window_starts(wgt, 8, 0.5)
    assert len(st) > 0 and st.max() <= 2
    with pytest.raises(ValueError):
        S.window_starts(wgt, 12)


@pytest.mark.parametrize("kind", ["square", "hex"])
def test_hidden_positions_never_reach_a_training_batch(kind):
    """Every value in every batch (inputs and targets) comes from a measured spot.

    Each spot of a full lattice gets a unique identity value; the measured 1/4 of them go into the
    training problem exactly as the benchmark's ``s2s`` method does; thousands of augmented samples
    are drawn and every kept input and every target is checked against the measured identities.
    """
    rr, cc = _nodes(kind, 28, 36)
    ident = (rr * 1000 + cc + 1).astype(np.float32)
    meas = measured_mask(rr, cc, kind)
    hidden_ids = set(ident[~meas].tolist())
    meas_ids = set(ident[meas].tolist())
    # measured-lattice coordinates, as methods.s2s.to_lattice computes them
    lr, lc = rr[meas] // 2, cc[meas] // 2
    cfg = S2SConfig.from_preset("fast", patch=8, max_steps=1, cross_gene=False)
    folds = assign_folds(int(meas.sum()), 4, np.random.default_rng(0))
    prob = build_problem(lr, lc, kind, ident[meas][:, None], cfg, folds=folds)
    rng = np.random.default_rng(1)
    for fold in range(4):
        seen_t, seen_k = set(), set()
        for _ in range(500):
            ch, tg, lm = _st_sample(prob, rng, augment=True, fold=fold)
            seen_t.update(tg[lm].tolist())
            kept = ch[1] > 0
            seen_k.update(ch[0][kept].tolist())
        assert seen_t and seen_k
        assert not (seen_t | seen_k) & hidden_ids
        assert (seen_t | seen_k) <= meas_ids
        # a fold's network never has that fold's spots as targets (its out-of-fold predictions are honest)
        assert not seen_t & set(ident[meas][folds == fold].tolist())
    # targets are never the kept inputs of the same sample
    for p in range(len(prob.channels)):
        kept = prob.channels[p][0, 1] > 0
        for f in range(4):
            assert not (prob.loss_mask(p, f) & kept).any()


def test_a_level_bandwidth_given_beforehand_scales_the_smoothers():
    """With ``adaptive``, a bandwidth chosen beforehand replaces the leave-one-out bandwidth of the
    values: the gene smoothers are the fixed-bandwidth smoothers at ``sigmas`` times it."""
    rr, cc = _nodes("square", 20, 20)
    rng = np.random.default_rng(0)
    vals = np.zeros((3, 20, 20), np.float32)
    vals[:, rr, cc] = rng.normal(size=(3, rr.size))
    kept = np.zeros((20, 20), bool)
    kept[::2, ::2] = True
    given = S.smooth_kept(vals, kept, "square", (0.5, 1.0, 2.0), adaptive=True, bandwidth=2.0)[0]
    fixed = S.smooth_kept(vals, kept, "square", (1.0, 2.0, 4.0), adaptive=False)[0]
    np.testing.assert_allclose(given, fixed, rtol=1e-6)
    assert S.level_bandwidth(None, kept, "square") is None
    assert S.level_bandwidth(vals, kept, "square") == S.loo_bandwidth(vals, kept, "square")[0]


def test_reference_genes_make_each_genes_channels_independent_of_the_users_pick(read_shared):
    """``bandwidth_genes``: the smoothers' bandwidth at each level comes from the slide's strongest
    genes, so a gene's input channels are the same whether the user picked 8 genes or 30 (with the
    user's genes setting it, as by default, they differ on this real slide), at the training level
    and at the dense level."""
    from napari_s2s.core.evaluation.benchmark import build_holdout
    from napari_s2s.core.methods.s2s import to_lattice
    from napari_s2s.core.s2s.engine import S2SImputer, cross_gene_matrix, gene_matrix_with_targets
    from napari_s2s.core.s2s.impute import dense_channels
    from napari_s2s.core.s2s.train import standardise

    task = build_holdout(read_shared("her2st_C2"), n_genes=30, seed=0)[0]
    lr, lc, tr, tc = to_lattice(task)
    values = np.asarray(task.measured_values, np.float32)
    mu, sd = standardise(values)
    z = (values - mu) / sd
    cfg = S2SConfig.from_preset("fast", cross_gene=False, bandwidth_genes=100)
    folds = assign_folds(len(lr), 4, np.random.default_rng(0))
    gm = gene_matrix_with_targets(cross_gene_matrix(task.measured_all_genes), values)
    ref = S2SImputer(cfg)._bandwidth_reference(lr, lc, task.kind, gm)
    assert ref.shape == (len(lr), 100) and np.allclose(ref.mean(0), 0, atol=1e-4)

    def training(zz, bw_ref):
        return build_problem(lr, lc, task.kind, zz, cfg, folds=folds, bandwidth_ref=bw_ref).channels

    def dense(zz, bw_ref):
        return dense_channels(lr, lc, task.kind, zz, cfg, tr, tc, bandwidth_ref=bw_ref)[0]

    for a, b in zip(training(z[:, :8], ref), training(z, ref)):
        np.testing.assert_array_equal(a, b[:8])
    np.testing.assert_array_equal(dense(z[:, :8], ref), dense(z, ref)[:8])
    own_few, own_many = training(z[:, :8], None), training(z, None)
    assert any(not np.array_equal(a, b[:8]) for a, b in zip(own_few, own_many))
