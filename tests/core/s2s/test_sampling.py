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
