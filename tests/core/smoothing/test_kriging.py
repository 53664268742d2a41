"""Kriging: the closed-form leave-one-out, exact vs nearest-neighbour solves, and what it buys on real slides."""

from __future__ import annotations

import numpy as np
import pytest

from napari_s2s.core.smoothing import kriging as K
from napari_s2s.core.smoothing.kriging import Kriging, loo_table, matern, standardise


def _field(n=14, genes=3, noise=0.3, seed=0):
    """A smooth field on the even/even sub-lattice of an n x n grid, with noise, and the hidden nodes."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[0:n, 0:n]
    r, c = rr.ravel().astype(float), cc.ravel().astype(float)
    truth = np.stack([np.sin(r / 3.0 + g) + np.cos(c / 4.0 - g) for g in range(genes)], axis=1)
    meas = (rr.ravel() % 2 == 0) & (cc.ravel() % 2 == 0)
    xy = np.stack([r, c], axis=1)
    return xy[meas], truth[meas] + rng.normal(0, noise, (meas.sum(), genes)), xy[~meas], truth[~meas]


def test_closed_form_leave_one_out_equals_refitting_without_each_spot():
    src, y, _, _ = _field(n=10)
    kr = Kriging(nu=0.5, ell=3.0, snr=2.0)
    mu = y.mean(axis=0)
    loo = kr.apply(src, y - mu)  # dst=None: leave-one-out
    for i in (0, 7, len(src) - 1):
        keep = np.arange(len(src)) != i
        direct = kr.apply(src[keep], (y - mu)[keep], src[i : i + 1])[0]
        assert np.allclose(loo[i], direct, atol=1e-10)
    # the table's errors are the same leave-one-out residuals, on standardised values
    _, _, z = standardise(y)
    tab = loo_table(src, z, 3.0, 0.5, snrs=(2.0,))
    assert np.allclose(tab[0], ((z - kr.apply(src, z)) ** 2).mean(axis=0))


def test_matern_kernels_are_correlations():
    d = np.array([0.0, 0.5, 2.0, 50.0])
    for nu in (0.5, 1.5, 2.5):
        k = matern(d, 2.0, nu)
        assert k[0] == pytest.approx(1.0) and np.all(np.diff(k) < 0) and k[-1] < 1e-6
    with pytest.raises(ValueError):
        matern(d, 1.0, 3.0)


def test_nearest_neighbour_solve_matches_the_exact_one(monkeypatch):
    src, y, dst, _ = _field(n=12)
    kr = Kriging.fit(src, y)
    exact = kr.predict(src, y, dst)
    exact_loo = kr.predict(src, y)
    monkeypatch.setattr(K, "MAX_EXACT", 10)
    monkeypatch.setattr(K, "NEIGHBOURS", len(src))  # every spot is a neighbour: the same solve
    assert np.allclose(kr.predict(src, y, dst), exact, atol=1e-5)  # float32 cross-covariances
    assert np.allclose(kr.predict(src, y), exact_loo, atol=1e-8)
    monkeypatch.setattr(K, "NEIGHBOURS", 24)  # the nearest 24: close (the exponential kernel screens)
    assert np.abs(kr.predict(src, y, dst) - exact).max() < 0.05 * np.abs(exact).max()


@pytest.mark.parametrize("kind", ["square", "hex"])
def test_nearest_neighbour_kriging_solves_each_neighbourhood_once(monkeypatch, kind):
    """Large slides: targets that see the same neighbourhood share one solve, and the predictions are
    those of solving every target on its own (a lattice with an irregular edge and a hole)."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(3)
    rr, cc = np.mgrid[0:40, 0:40]
    keep = (np.hypot(rr - 20, cc - 17) < 19) & ~((rr - 25) ** 2 + (cc - 12) ** 2 < 9)
    src = np.stack([rr[keep], cc[keep]], axis=1).astype(float)
    if kind == "hex":
        src = np.stack([src[:, 0] * np.sqrt(3) / 2, src[:, 1] + 0.5 * (src[:, 0] % 2)], axis=1)
    v = rng.normal(size=(len(src), 3))
    dst = np.concatenate([src + [0.25, 0.5], src[::3] + [0.5, 0.0]])
    kr = Kriging(nu=0.5, ell=2.5, snr=3.0)
    monkeypatch.setattr(K, "NEIGHBOURS", 12)
    solved = []
    real = K._neighbour_weights
    monkeypatch.setattr(K, "_neighbour_weights", lambda kr_, rel, **kw: solved.append(len(rel)) or real(kr_, rel, **kw))

    def one_by_one(targets, loo):
        tree = cKDTree(src)
        out = []
        for t in targets:
            d, idx = tree.query(t, k=12 + loo)
            d, idx = d[loo:], idx[loo:]
            p = src[idx]
            kss = kr.snr * matern(np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1)), kr.ell, kr.nu) + np.eye(12)
            out.append(np.linalg.solve(kss, kr.snr * matern(d, kr.ell, kr.nu)) @ v[idx])
        return np.array(out)

    got = K._local(kr, src, v, dst, chunk=500)
    assert sum(solved) < len(dst) / 4  # far fewer solves than targets
    np.testing.assert_allclose(got, one_by_one(dst, 0), atol=1e-7)
    np.testing.assert_allclose(K._local(kr, src, v, None, chunk=500), one_by_one(src, 1), atol=1e-7)


def test_fit_separates_the_field_from_the_noise():
    src, y, dst, truth = _field(noise=0.3)
    noisy = Kriging.fit(src, y)
    src2, y2, _, _ = _field(noise=0.02)
    clean = Kriging.fit(src2, y2)
    assert clean.snr > noisy.snr  # less noise: trusts the spots more
    # hidden nodes of a smooth field: kriging beats the Gaussian-weighted mean with its LOO bandwidth
    from napari_s2s.core.smoothing.gaussian import choose_bandwidth_loo, gaussian_smooth

    g = gaussian_smooth(src, y, dst, choose_bandwidth_loo(src, y))
    assert np.mean((noisy.predict(src, y, dst) - truth) ** 2) < np.mean((g - truth) ** 2)


def test_kriging_beats_the_gaussian_smoother_on_the_small_shared_slides(read_shared):
    """Hold-out protocol, hidden spots: kriging's mean median PCC over the four legacy ST slides is
    above the Gaussian smoother's (choices made on measured spots only)."""
    from napari_s2s.core.evaluation.benchmark import build_holdout, run_method, score, summarise

    diff = []
    for name in ("her2st_B4", "her2st_C2", "st_breast_cancer_layer2", "st_mouse_olfactory_bulb"):
        task, truth, meta = build_holdout(read_shared(name))
        pcc = {}
        for m in ("gaussian", "kriging"):
            pred, _, _ = run_method(m, task)
            pcc[m] = summarise(score(task, truth, pred, meta), 0.0)["pcc_median"]
        diff.append(pcc["kriging"] - pcc["gaussian"])
    assert np.mean(diff) > 0.0


@pytest.mark.parametrize("collide", [False, True])
def test_unique_rows_groups_rows_as_numpy_unique_does(monkeypatch, collide):
    """The hashed grouping of neighbourhoods: the same distinct rows as ``np.unique(axis=0)``, each
    row mapped to its own key; with every hash colliding it falls back to ``np.unique``."""
    rng = np.random.default_rng(5)
    pool = rng.integers(-(2**40), 2**40, size=(37, 24))
    rows = pool[rng.integers(0, len(pool), 5000)]
    if collide:
        monkeypatch.setattr(K, "_HASH", np.zeros_like(K._HASH))
    keys, inv = K._unique_rows(rows)
    np.testing.assert_array_equal(keys[inv], rows)
    assert len(keys) == len(np.unique(rows, axis=0)) == 37
    assert inv.shape == (len(rows),)


def test_spd_inverse_is_the_symmetric_inverse_and_survives_a_failed_factorisation():
    src, _, _, _ = _field(n=16)
    k = Kriging(nu=0.5, ell=3.0, snr=5.0).covariance(src, src)
    k[np.diag_indices_from(k)] += 1.0
    inv = K.spd_inverse(k)
    assert np.array_equal(inv, inv.T)
    assert np.allclose(inv @ k, np.eye(len(k)), atol=1e-10)
    assert np.allclose(inv, np.linalg.inv(k), atol=1e-12)
    # not positive definite (no Cholesky factor): numpy's inverse, still symmetric
    bad = np.array([[1.0, 2.0], [2.0, 1.0]])
    assert np.allclose(K.spd_inverse(bad), np.linalg.inv(bad))


@pytest.mark.parametrize("nu", [0.5, 1.5, 2.5])
def test_cross_covariances_applied_in_blocks_match_the_kernel_even_under_a_bfloat16_autocast(nu):
    import torch

    rng = np.random.default_rng(3)
    # coordinates far from the origin (physical units of a large slide): centring keeps float32 exact enough
    src = rng.uniform(0, 40, (300, 2)) + 5000.0
    dst = rng.uniform(-3, 43, (1000, 2)) + 5000.0
    alpha = rng.normal(size=(300, 4))
    kr = Kriging(nu=nu, ell=2.5, snr=3.0)
    ref = kr.covariance(dst, src) @ alpha
    out = K.cross_apply(kr, src, dst, alpha, block=256)  # several blocks, the last one partial
    assert out.dtype == np.float64 and out.shape == ref.shape
    assert np.abs(out - ref).max() < 1e-5 * np.abs(ref).max()
    # the engine predicts inside a bfloat16 autocast on CPUs that have it: the weights stay float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        again = K.cross_apply(kr, src, dst, alpha, block=256)
    assert np.array_equal(again, out)
    assert K.cross_apply(kr, src, dst[:0], alpha).shape == (0, 4)
