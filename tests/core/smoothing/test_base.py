"""The base predictor: what K-fold cross-validation over the measured spots picks, and its predictions."""

from __future__ import annotations

import numpy as np

from napari_s2s.core.smoothing.base import (
    MIN_CV_SPOTS,
    BaseChoice,
    BasePredictor,
    candidates,
    mixture_from,
    one_se_choice,
    stack_weights,
)


def _lattice(n=16):
    rr, cc = np.mgrid[0:n:2, 0:n:2]
    return np.stack([rr.ravel(), cc.ravel()], axis=1).astype(float)


def test_candidates_follow_what_the_slide_allows():
    assert candidates(100, 0, False) == [BaseChoice()]  # no other genes, no image: plain kriging
    c = candidates(100, 500, True)
    assert BaseChoice() == c[0]  # plain kriging first (wins ties)
    assert any(x.histology for x in c) and any(x.components == 30 for x in c)
    assert all(x.components is None or x.components <= 10 for x in candidates(15, 500, False))


def test_one_standard_error_rule_prefers_the_simpler_candidate_within_noise():
    rng = np.random.default_rng(3)
    cands = [BaseChoice(), BaseChoice(8), BaseChoice(8, histology=True)]
    plain = rng.gamma(1.0, 1.0, 60)
    # the richer candidates are "better" on average by a sliver, spot by spot noisily: plain kriging wins
    noisy = np.stack([plain, plain + rng.normal(-0.01, 0.3, 60), plain + rng.normal(-0.02, 0.3, 60)])
    errs = noisy.mean(axis=1)
    assert int(np.argmin(errs)) != 0 and one_se_choice(cands, errs, noisy) == 0
    # better on (nearly) every spot: the difference is well outside the noise, the best wins
    clear = np.stack([plain, plain - 0.2 + rng.normal(0, 0.02, 60), plain - 0.4 + rng.normal(0, 0.02, 60)])
    assert one_se_choice(cands, clear.mean(axis=1), clear) == 2
    # PCA clearly better than plain, the H&E term adds only noise: PCA without the term
    mixed = np.stack([plain, plain - 0.2 + rng.normal(0, 0.02, 60), plain - 0.21 + rng.normal(0, 0.3, 60)])
    assert one_se_choice(cands, mixed.mean(axis=1), mixed) == 1


def test_stack_weights_are_the_convex_least_squares_fit():
    rng = np.random.default_rng(5)
    y = rng.normal(size=400)
    # three candidate predictions: two informative with independent errors, one far off
    p = np.stack([y + rng.normal(0, 0.5, 400), y + rng.normal(0, 0.5, 400), rng.normal(3.0, 1.0, 400)])
    w = stack_weights(p @ p.T, p @ y)
    assert np.isclose(w.sum(), 1.0) and (w >= 0).all()
    assert w[2] == 0.0 and abs(w[0] - 0.5) < 0.1 and abs(w[1] - 0.5) < 0.1  # equal errors: equal shares
    # against a brute-force search over the simplex
    grid = [(a, b, 1 - a - b) for a in np.linspace(0, 1, 101) for b in np.linspace(0, 1, 101) if a + b <= 1 + 1e-12]
    brute = min(grid, key=lambda v: float(((np.asarray(v) @ p - y) ** 2).sum()))
    assert float(((w @ p - y) ** 2).sum()) <= float(((np.asarray(brute) @ p - y) ** 2).sum()) + 1e-9
    # a better candidate takes all the weight; identical candidates share it
    q = np.stack([y + rng.normal(0, 0.01, 400), y + rng.normal(0, 1.0, 400)])
    assert stack_weights(q @ q.T, q @ y)[0] > 0.98
    r = np.stack([q[0], q[0]])
    assert np.allclose(stack_weights(r @ r.T, r @ y), 0.5)


def test_a_stack_predicts_the_weighted_sum_of_its_members():
    """The merged predictor (weighted denoised values, weighted H&E coefficients, one kriging
    smoother) predicts exactly what its members refitted alone predict, weighted."""
    rng = np.random.default_rng(6)
    phys = _lattice(20)
    m = len(phys)
    tissue = (rng.random(m) < 0.3).astype(float)
    feats = np.stack([tissue + rng.normal(0, 0.1, m), rng.normal(size=m)], axis=1)
    factors = np.stack([np.sin(phys[:, 0] / 3.0), np.cos(phys[:, 1] / 4.0)], axis=1)
    x = factors @ rng.normal(size=(2, 80)) + tissue[:, None] + rng.normal(0, 0.8, (m, 80))
    b = BasePredictor(seed=0).fit(phys, x[:, :4], x, np.arange(4), feats)
    assert len(b.mixture) > 1 and np.isclose(sum(w for _, w in b.mixture), 1.0)
    assert (
        b.label == f"stack of {len(b.mixture)}, mainly {b.mixture[0][0].label} at {b.mixture[0][1]:.2f}"
        and b.describe()["mixture"][0]["weight"] == b.mixture[0][1]
    )
    dst, f_dst = phys[:50] + 1.0, feats[:50]
    parts = [
        w * BasePredictor().refit(phys, x[:, :4], b.kriging, c, x, np.arange(4), feats).predict(dst, f_dst)
        for c, w in b.mixture
    ]
    np.testing.assert_allclose(b.predict(dst, f_dst if b.uses_histology else None), sum(parts), atol=1e-8)
    # the stack's members are the candidates' refits: its cross-validated choice rules still exist
    one = BasePredictor(seed=0, selection="one-se").fit(phys, x[:, :4], x, np.arange(4), feats)
    assert len(one.mixture) == 1 and one.cv_errors == b.cv_errors


def test_cross_gene_denoising_is_chosen_when_genes_share_patterns_and_not_otherwise():
    rng = np.random.default_rng(0)
    phys = _lattice(20)
    m = len(phys)
    # 2 smooth spatial factors drive 200 genes; the 5 target genes are 5 of them, very noisy
    factors = np.stack([np.sin(phys[:, 0] / 3.0), np.cos(phys[:, 1] / 4.0)], axis=1)
    shared = factors @ rng.normal(size=(2, 200)) + rng.normal(0, 1.0, (m, 200))
    b = BasePredictor(seed=0).fit(phys, shared[:, :5], shared, np.arange(5))
    assert b.choice.components is not None and b.choice.components <= 8
    assert b.cv_errors[b.choice.label] <= b.cv_errors["kriging"]
    # independent genes (each target its own pattern): denoising by other genes cannot help
    alone = rng.normal(size=(m, 200))
    for g in range(5):
        alone[:, g] += 2 * np.sin(phys[:, g % 2] / (2.0 + g) + g)
    b2 = BasePredictor(seed=0).fit(phys, alone[:, :5], alone, np.arange(5))
    assert b2.choice.components is None


def test_histology_term_is_chosen_only_when_the_image_explains_the_residual():
    rng = np.random.default_rng(1)
    phys = _lattice(20)
    m = len(phys)
    tissue = (rng.random(m) < 0.3).astype(float)  # a spot-level tissue type the smoother cannot see
    feats = np.stack([tissue + rng.normal(0, 0.1, m), rng.normal(size=m), rng.normal(size=m)], axis=1)
    y = np.stack([np.sin(phys[:, 0] / 4.0) + 2.0 * tissue + rng.normal(0, 0.3, m) for _ in range(3)], axis=1)
    b = BasePredictor(seed=0).fit(phys, y, features=feats)
    assert b.uses_histology and "H&E" in b.label
    # the term is clipped at targets to what the measured spots showed, unless asked not to be (test_ridge.py)
    free = BasePredictor(seed=0, clip_histology=False).fit(phys, y, features=feats)
    assert b.term.low is not None and free.term.low is None
    # the control: the same features shuffled between spots
    b2 = BasePredictor(seed=0).fit(phys, y, features=feats[rng.permutation(m)])
    assert not b2.uses_histology
    # the term alone at the measured spots is what the image explains there
    t = b.term_loo()
    assert np.corrcoef(t[:, 0], tissue)[0, 1] > 0.8
    # the smoother's part (what the networks start from) plus the term is the whole prediction
    dst, f_dst = phys[:30] + 0.5, feats[:30]
    np.testing.assert_allclose(b.smooth(dst) + b.term_at(dst, f_dst), b.predict(dst, f_dst), atol=1e-5)
    sub = np.arange(0, m, 3)
    np.testing.assert_allclose(b.smooth(dst, sources=sub), b2.smooth(dst, sources=sub), atol=1e-5)  # no image


def test_predict_from_a_sub_lattice_and_few_spots():
    rng = np.random.default_rng(2)
    phys = _lattice(16)
    y = np.sin(phys[:, :1] / 3.0) + rng.normal(0, 0.1, (len(phys), 1))
    b = BasePredictor(seed=0).fit(phys, y)
    full = b.predict(phys)
    sub = np.flatnonzero((phys[:, 0] % 4 == 0) & (phys[:, 1] % 4 == 0))
    part = b.predict(phys, sources=sub)
    # from a sub-lattice: the same smoother conditioned on fewer spots (different, still close)
    assert not np.allclose(full, part) and np.corrcoef(full[:, 0], part[:, 0])[0, 1] > 0.9
    small = BasePredictor(seed=0).fit(phys[: MIN_CV_SPOTS - 1], y[: MIN_CV_SPOTS - 1])
    assert small.choice == BaseChoice() and small.cv_errors == {}


def test_refit_with_a_known_choice_reproduces_the_fit():
    rng = np.random.default_rng(3)
    phys = _lattice(20)
    x = rng.normal(size=(len(phys), 50)) + np.sin(phys[:, :1] / 3.0)
    b = BasePredictor(seed=0).fit(phys, x[:, :4], x, np.arange(4))
    again = BasePredictor().refit(phys, x[:, :4], b.kriging, b.mixture, x, np.arange(4))
    dst = phys + 1.0
    assert np.allclose(b.predict(dst), again.predict(dst))
    # from the saved summary (what a saved model keeps), and from one of before stacking (one choice)
    info = b.describe()
    assert np.allclose(
        b.predict(dst),
        BasePredictor().refit(phys, x[:, :4], b.kriging, mixture_from(info), x, np.arange(4)).predict(dst),
    )
    old = {k: v for k, v in info.items() if k != "mixture"}
    single = mixture_from(old)
    assert single == ((b.choice, 1.0),)


def test_a_real_size_gene_matrix_is_used_in_blocks_as_float32(monkeypatch):
    """Above pca.BLOCK_ABOVE values the base predictor keeps a float32 gene matrix as it is and
    works through blocks of spots: the same choice and predictions as the in-memory float64 route,
    and nothing of the matrix kept after the fit."""
    from napari_s2s.core.s2s.engine import gene_matrix_with_targets
    from napari_s2s.core.smoothing import pca

    rng = np.random.default_rng(4)
    phys = _lattice(24)
    m = len(phys)
    factors = np.stack([np.sin(phys[:, 0] / 3.0), np.cos(phys[:, 1] / 4.0)], axis=1)
    allg = (factors @ rng.normal(size=(2, 60)) + rng.normal(0, 1.0, (m, 60))).astype(np.float32)
    values = np.concatenate([allg[:, [3, 7]], rng.normal(size=(m, 1)).astype(np.float32)], axis=1)
    dst = phys[:40] + 1.0

    def run():
        x, cols = gene_matrix_with_targets(allg, values)
        # the lowest CV error (not the 1-SE rule) so that a PCA candidate, the route under test, is chosen
        b = BasePredictor(seed=0, components=(2, 4, 8), repeats=1, selection="lowest").fit(phys, values, x, cols)
        return x, cols, b, b.predict(dst)

    x0, cols0, b0, p0 = run()
    assert x0.dtype == np.float64 and cols0.tolist() == [3, 7, 60]
    monkeypatch.setattr(pca, "BLOCK_ABOVE", 0)
    monkeypatch.setattr(pca, "BLOCK_ROWS", 7)
    x1, cols1, b1, p1 = run()
    assert x1.dtype == np.float32 and cols1.tolist() == [3, 7, 60]
    assert b1.choice == b0.choice and b0.choice.components is not None
    np.testing.assert_allclose(p1, p0, rtol=1e-9, atol=1e-9)
    assert b1.x is None
    for st in (False, True):
        ref = pca._pca_basis_blocks(x1, 4, st)
        monkeypatch.setattr(pca, "BLOCK_ABOVE", 10**12)
        mem = pca.pca_basis(x1, 4, st)
        monkeypatch.setattr(pca, "BLOCK_ABOVE", 0)
        for a, b in zip(ref[:2], mem[:2]):
            np.testing.assert_allclose(a, b, rtol=1e-10)
        np.testing.assert_allclose(np.abs(ref[2] @ mem[2].T), np.eye(4), atol=1e-8)  # same directions
