"""he_gaussian and its permuted control: uses the image, never the hidden spots, and the control controls."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from napari_s2s.core.data.slide import Slide
from napari_s2s.core.evaluation.benchmark import build_holdout, run_method, score, summarise
from napari_s2s.core.methods import METHODS, applies, load_all
from napari_s2s.core.methods.histology import HeGaussian, ridge_gcv

WHITE = np.array([243.0, 241.0, 246.0])
PINK = np.array([236.0, 160.0, 195.0])
PURPLE = np.array([70.0, 40.0, 140.0])


def _stain_slide(n: int = 24, seed: int = 0, blank: bool = False) -> Slide:
    """Square lattice whose 'StainGene' follows each spot's own (spatially random) stain level.

    The stain level of every spot is drawn independently, so neighbours say nothing about it and
    only the image does; 'Trend' is a smooth gradient the smoother alone gets right.
    """
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[0:n, 0:n]
    rows, cols = rr.ravel(), cc.ravel()
    pitch, radius = 20.0, 6.0
    x = cols * pitch + 30.0
    y = rows * pitch + 30.0
    level = rng.random(rows.size)
    size = int(n * pitch + 60)
    img = np.empty((size, size, 3))
    img[:] = WHITE
    img[15 : size - 15, 15 : size - 15] = PINK
    if not blank:
        yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
        disk = yy**2 + xx**2 <= radius**2
        for xi, yi, a in zip(x.astype(int), y.astype(int), level):
            patch = img[yi - int(radius) : yi + int(radius) + 1, xi - int(radius) : xi + int(radius) + 1]
            patch[disk] = PINK * (1 - a) + PURPLE * a
    lib = rng.lognormal(np.log(3000.0), 0.2, rows.size)
    rates = {
        "StainGene": 0.002 + 0.03 * level,
        "Trend": 0.002 + 0.02 * cols / n,
        "Noise1": np.full(rows.size, 0.01),
    }
    counts = np.stack([rng.poisson(r * lib) for r in rates.values()], axis=1).astype(np.float32)
    return Slide(
        counts=sp.csr_matrix(counts),
        genes=np.array(list(rates)),
        barcodes=np.array([f"s{i}" for i in range(rows.size)]),
        array_row=rows,
        array_col=cols,
        in_tissue=np.ones(rows.size, bool),
        pixel_xy=np.stack([x, y], axis=1),
        images={"hires": np.clip(img, 0, 255).astype(np.uint8)},
        scalefactors={"hires": 1.0},
        spot_diameter_px=2 * radius,
    )


def _run(names, task, truth, meta):
    return {n: summarise(score(task, truth, run_method(n, task)[0], meta), 0.0) for n in names}


@pytest.fixture(scope="module")
def stain_holdout():
    return build_holdout(_stain_slide(), genes=["StainGene", "Trend"])


def test_registered_and_needs_histology(stain_holdout):
    load_all()
    task, _, _ = stain_holdout
    for name in ("he_gaussian", "he_gaussian-permuted"):
        assert name in METHODS and METHODS[name].needs_histology
        assert applies(name, task)
        assert not applies(name, dataclasses.replace(task, histology=None))
    assert METHODS["he_gaussian-permuted"]().name == "he_gaussian-permuted"


def test_image_driven_gene_is_recovered_and_the_control_is_not(stain_holdout):
    task, truth, meta = stain_holdout
    res = _run(["gaussian", "he_gaussian", "he_gaussian-permuted"], task, truth, meta)
    stain = {k: v["per_gene"]["StainGene"] for k, v in res.items()}
    assert stain["he_gaussian"]["pcc"] > 0.6
    assert stain["he_gaussian"]["pcc"] > stain["gaussian"]["pcc"] + 0.4
    assert stain["he_gaussian"]["rmse"] < 0.8 * stain["gaussian"]["rmse"]
    # the control keeps the features' distribution but not their place: no gain
    assert stain["he_gaussian-permuted"]["pcc"] < stain["gaussian"]["pcc"] + 0.1
    assert stain["he_gaussian-permuted"]["rmse"] > 0.95 * stain["gaussian"]["rmse"]
    # the smooth gene stays as good as the smoother makes it
    trend = {k: v["per_gene"]["Trend"] for k, v in res.items()}
    assert trend["he_gaussian"]["pcc"] > trend["gaussian"]["pcc"] - 0.05


def test_uninformative_image_gives_exactly_the_gaussian_baseline():
    task, _, _ = build_holdout(_stain_slide(blank=True), genes=["StainGene", "Trend"])
    base, _, _ = run_method("gaussian", task)
    method = HeGaussian()
    pred = method.predict(task)
    np.testing.assert_array_equal(pred, base)
    assert method.details_["penalty"] is None  # constant features: no histology term at all
    pca_base, _, _ = run_method("pca_gaussian", task)
    np.testing.assert_array_equal(HeGaussian(smoother="pca_gaussian").predict(task), pca_base)


def test_hidden_spots_never_used(stain_holdout):
    task, _, _ = stain_holdout
    # 1) shuffling the hidden spots' counts among themselves changes nothing the method may see
    slide = _stain_slide()
    measured = np.zeros(slide.n_spots, bool)
    measured[slide.usable()] = build_holdout(slide, genes=["StainGene"])[2]["measured_mask"]
    hidden = np.flatnonzero(~measured)
    perm = np.arange(slide.n_spots)
    perm[hidden] = np.random.default_rng(1).permutation(hidden)
    scrambled = dataclasses.replace(slide, counts=slide.counts[perm], geometry=None)
    task2, truth2, _ = build_holdout(scrambled, genes=["StainGene", "Trend"])
    np.testing.assert_array_equal(task2.measured_values, task.measured_values)
    np.testing.assert_array_equal(HeGaussian().predict(task2), HeGaussian().predict(task))
    # 2) a target's prediction does not depend on which other targets are asked for
    sub = np.arange(0, len(task.target_rows), 3)
    task3 = dataclasses.replace(task, target_rows=task.target_rows[sub], target_cols=task.target_cols[sub])
    np.testing.assert_allclose(HeGaussian().predict(task3), HeGaussian().predict(task)[sub], atol=1e-12)


def test_ridge_gcv_fits_signal_and_refuses_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 6))
    beta = np.array([1.0, -0.5, 0, 0, 0, 0])
    y_signal = x @ beta + 0.1 * rng.normal(size=80) + 3.0
    y_noise = rng.normal(size=80)
    b, icpt, lam = ridge_gcv(x, np.stack([y_signal, y_noise], axis=1), shared=False)
    np.testing.assert_allclose(b[:, 0], beta, atol=0.1)
    assert abs(icpt[0] - 3.0) < 0.1
    assert np.isfinite(lam[0])
    assert np.abs(b[:, 1]).max() < 0.15  # pure noise: no model, or a heavily shrunk one


def test_real_visium_slide_histology_helps_and_control_does_not(read_shared):
    task, truth, meta = build_holdout(read_shared("visium_mouse_brain"), n_genes=12)
    res = _run(["gaussian", "he_gaussian", "he_gaussian-permuted"], task, truth, meta)
    g, he, perm = res["gaussian"], res["he_gaussian"], res["he_gaussian-permuted"]
    assert he["pcc_median"] > g["pcc_median"] + 0.02
    assert he["rmse_median"] < g["rmse_median"]
    assert perm["pcc_median"] < he["pcc_median"] - 0.02
    assert perm["pcc_median"] < g["pcc_median"] + 0.01


def test_s2s_he_trains_with_the_h_and_e_term(stain_holdout):
    pytest.importorskip("torch")
    import torch

    torch.set_num_threads(1)
    task, truth, _ = stain_holdout
    load_all()
    assert METHODS["s2s-he"].needs_histology and not getattr(METHODS["s2s"], "needs_histology", False)
    method = METHODS["s2s-he"](max_steps=2, natural_images=False)
    pred = method.predict(task)
    assert pred.shape == truth.shape and np.isfinite(pred).all() and (pred >= 0).all()
    assert "H&E" in method.details_["base"]  # the stain gene is explained by the image
    # the image as network input channels (an ablation) runs too
    chan = METHODS["s2s-hechan"](max_steps=2, natural_images=False)
    assert chan.predict(task).shape == truth.shape
    with pytest.raises(ValueError):
        METHODS["s2s-he"](max_steps=2).predict(dataclasses.replace(task, histology=None))


def test_s2s_without_histology_signal_is_s2s_without_histology():
    """A blank image explains nothing: cross-validation leaves the H&E term out, and ``s2s`` (auto)
    gives exactly what ``s2s-nohe`` gives."""
    pytest.importorskip("torch")
    load_all()
    task, _, _ = build_holdout(_stain_slide(n=16, blank=True), genes=["StainGene", "Trend"])
    opts = dict(max_steps=2, natural_images=False)
    auto = METHODS["s2s"](**opts)
    pred = auto.predict(task)
    assert "H&E" not in auto.details_["base"]
    np.testing.assert_allclose(METHODS["s2s-nohe"](**opts).predict(task), pred, atol=1e-6)


@pytest.mark.parametrize("name", ["s2s-he", "s2s-hechan"])
def test_s2s_he_stops_from_another_thread(stain_holdout, name):
    """The dock's Stop during a validation of s2s-he: its training ends, predict raises MethodStopped."""
    import threading
    import time

    from napari_s2s.core.methods import MethodStopped

    task, _, _ = stain_holdout
    task = dataclasses.replace(task, budget_s=120.0)
    method = load_all()[name](natural_images=False, threads=1)
    ended = {}

    def target():
        try:
            method.predict(task)
        except MethodStopped:
            ended["stopped"] = True

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    time.sleep(2.0)
    t_stop = time.perf_counter()
    method.stop()
    thread.join(60)
    assert not thread.is_alive() and ended.get("stopped")
    assert time.perf_counter() - t_stop < 30  # not the 120 s budget


def test_the_he_methods_take_a_callers_general_options():
    """The dock's Validate passes every method the same general options (budget, seed, preset):
    he_gaussian failed on budget_s, which it has no use for."""
    from napari_s2s.core.methods.base import load_all

    methods = load_all()
    for name in ("he_gaussian", "he_gaussian-permuted"):
        m = methods[name](budget_s=5.0, seed=1, preset="fast", smoother="pca_gaussian")
        assert m.name == name and m.smoother == "pca_gaussian"
