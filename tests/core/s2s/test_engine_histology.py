"""H&E guidance in the engine (``S2SConfig.histology``): resolution, exactness, effect."""

from __future__ import annotations

import numpy as np
import pytest

from napari_s2s.core.errors import SlideError
from napari_s2s.core.s2s.engine import S2SConfig, S2SImputer, resolve_histology


def _tiny(histology="on", **kw) -> S2SConfig:
    """A two-step CPU config (no natural images, no test-time passes) for engine tests."""
    return S2SConfig.from_preset(
        "fast",
        max_steps=2,
        budget_s=None,
        natural_images=False,
        threads=1,
        device="cpu",
        histology=histology,
        tta=False,
        **kw,
    )


def _run(slide, genes, mode):
    imp = S2SImputer(_tiny(mode))
    imp.fit(slide, genes)
    return imp, imp.impute(slide, genes)


def test_histology_modes_resolve(synthetic_slide, read_shared):
    assert resolve_histology("auto", synthetic_slide) is True
    assert resolve_histology("off", synthetic_slide) is False
    grid_only = read_shared("st_breast_cancer_layer2")
    assert resolve_histology("auto", grid_only) is False
    with pytest.raises(SlideError, match="H&E image"):
        resolve_histology("on", grid_only)
    with pytest.raises(ValueError, match="histology"):
        S2SConfig(histology="maybe")


def test_guided_imputation_keeps_measured_values_and_uses_the_image(read_shared):
    """HER2ST C2: the H&E term explains what kriging misses (cross-validation keeps it in auto mode)."""
    s = read_shared("her2st_C2")
    genes = s.top_variable_genes(3)
    imp_on, on = _run(s, genes, "auto")
    imp_off, off = _run(s, genes, "off")
    assert imp_on.histology_used and not imp_off.histology_used
    assert "H&E" in imp_on.stats["base"] and "H&E" not in imp_off.stats["base"]
    cv = imp_on.base_info["cv_errors"]
    assert cv["kriging + H&E"] < cv["kriging"]
    # measured values exact in both
    meas = s.lognorm(genes)
    for res in (on, off):
        assert np.array_equal(res.values[res.measured], _measured_in_dense_order(s, res, meas))
    # the H&E term changes the imputed (not the measured) positions
    diff = np.abs(on.values[~on.measured] - off.values[~off.measured]).mean(axis=0)
    assert diff.min() > 1e-3


def _measured_in_dense_order(slide, res, meas):
    use = slide.usable()
    key = {(2 * int(r), 2 * int(c)): i for i, (r, c) in enumerate(zip(slide.array_row[use], slide.array_col[use]))}
    idx = [key[(int(r), int(c))] for r, c in zip(res.dense_rows[res.measured], res.dense_cols[res.measured])]
    return meas[np.array(idx)]


def test_guided_preview_and_model_output(read_shared):
    """Previews and the model-output layer include the H&E term too; X stays exact."""
    s = read_shared("her2st_C2")
    genes = s.top_variable_genes(2)
    imp = S2SImputer(_tiny())
    previews = [imp.preview(s, genes) for ev in imp.fit_iter(s, genes) if ev.phase == "train"]
    assert imp.histology_used and len(previews) == 2
    final = imp.impute(s, genes)
    meas = s.lognorm(genes)
    for res in (previews[-1], final):
        assert np.array_equal(res.values[res.measured], _measured_in_dense_order(s, res, meas))
        assert np.all(np.isfinite(res.values)) and np.all(res.values >= 0)
    np.testing.assert_array_equal(final.model_values[~final.measured], final.values[~final.measured])
    assert np.all(final.model_values >= 0)


def test_networks_can_learn_the_values_while_the_base_keeps_the_h_and_e_term(read_shared):
    """``network_target="values"``: the base still has its H&E term, the networks train on the values
    themselves (not on what the term leaves) and their predictions get no term added; measured values
    stay exact (HER2ST C2)."""
    s = read_shared("her2st_C2")
    genes = s.top_variable_genes(2)
    imp = S2SImputer(_tiny(network_target="values", blend="network"))
    seen = 0
    for ev in imp.fit_iter(s, genes):
        if ev.phase == "train":  # while training: what the networks learn from
            tr = imp._training
            assert tr["term"] is None
            np.testing.assert_allclose(tr["mu"], tr["values"].mean(axis=0), rtol=1e-5)
            seen += 1
    assert seen and imp.histology_used
    res = imp.impute(s, genes)
    assert np.array_equal(res.values[res.measured], _measured_in_dense_order(s, res, s.lognorm(genes)))
    with pytest.raises(ValueError, match="network_target"):
        S2SConfig(network_target="both")


def test_phase_targets_take_the_h_and_e_term_from_the_kept_spots(read_shared):
    """``term_sources="kept"``: in each phase the residual networks' targets are what the H&E term
    leaves with its features smoothed from that phase's kept spots (the term the base's own
    out-of-fold prediction adds), while their inputs keep the leave-one-out term (HER2ST C2)."""
    s = read_shared("her2st_C2")
    genes = s.top_variable_genes(3)
    probs = {}
    for mode in ("all", "kept"):
        imp = S2SImputer(_tiny(term_sources=mode))
        for ev in imp.fit_iter(s, genes):
            if ev.phase == "train":
                probs[mode] = imp._training
        assert imp.histology_used
    a, k = probs["all"], probs["kept"]
    assert a["prob"].phase_targets is None and k["prob"].phase_targets is not None
    for ca, ck in zip(a["prob"].channels, k["prob"].channels):  # the same inputs
        np.testing.assert_array_equal(ca, ck)
    from napari_s2s.core.s2s.blend import kept_sources

    prob, base, values = k["prob"], k["base"], k["values"]
    pix, phys, f = prob.spot_pixels, base.phys, base.features
    changed = 0
    for p in range(len(prob.channels)):
        src = kept_sources(prob, p)
        held = np.setdiff1d(np.arange(len(values)), src)
        term = base.term_at(phys, f, sources=src)
        # the term the base's out-of-fold prediction adds: predict = smoother + term, same sources
        np.testing.assert_allclose(
            base.predict(phys[held], f[held], sources=src),
            base.smooth(phys[held], sources=src) + term[held],
            atol=1e-5,
        )
        want = (values - term - k["mu"]) / k["sd"]
        got = prob.target_of(p)[:, pix[:, 0], pix[:, 1]].T
        np.testing.assert_allclose(got[held], want[held], atol=1e-4)
        np.testing.assert_allclose(k["term"][p], term, atol=1e-5)
        changed += np.abs(got[held] - a["prob"].target[:, pix[held, 0], pix[held, 1]].T).mean() > 1e-3
    assert changed == len(prob.channels)  # conditioned on fewer spots, the term differs in every phase
    with pytest.raises(ValueError, match="term_sources"):
        S2SConfig(term_sources="some")
    with pytest.raises(ValueError, match="kept_dropout"):
        S2SConfig(term_sources="kept", kept_dropout=0.2)
