"""The DIST-style CNN: level geometry, shapes, budget, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from napari_s2s.core.evaluation.benchmark import build_holdout
from napari_s2s.core.methods import METHODS, ImputationTask
from napari_s2s.core.methods import dist as dist_mod

SMALL = dict(width=8, threads=1)


@pytest.fixture
def identity_net(monkeypatch):
    """DIST networks built with the residual branch zeroed: the output is the input repeated 2x2."""
    build = dist_mod._build_net

    def zero_tail(width=64, blocks=5):
        net = build(width, blocks)
        net.tail.weight.data.zero_()
        net.tail.bias.data.zero_()
        return net

    monkeypatch.setattr(dist_mod, "_build_net", zero_tail)


def test_registered():
    assert "dist" in METHODS


def test_level_image_fills_hex_gaps_with_nearest_mean():
    # hex level: spots at (0,0), (0,2), (1,1); the gap (0,1) sits between (0,0) and (0,2)
    a = np.array([0, 0, 1])
    b = np.array([0, 2, 1])
    vals = np.array([[1.0], [3.0], [7.0]])
    img = dist_mod._level_image(a, b, vals, (0, 0), (3, 5), "hex")
    assert img.shape == (1, 3, 5)
    assert img[0, 0, 0] == 1.0 and img[0, 0, 2] == 3.0 and img[0, 1, 1] == 7.0
    assert img[0, 0, 1] == pytest.approx(2.0)  # mean of its two nearest spots
    assert img[0, 2, 4] == 0.0  # far from every spot: 0


def test_untrained_identity_network_copies_the_parent_cell(identity_net, square_task):
    """With the residual branch zeroed, the output is the input repeated into 2x2 blocks, so each
    target must receive the value of the measured spot whose cell contains it: checks the alignment
    of levels and origins."""
    task = square_task()
    pred = dist_mod.Dist(epochs=0, **SMALL).predict(task)
    parent = (task.target_rows // 2 * 2) * 10.0 + (task.target_cols // 2 * 2)
    assert np.allclose(pred[:, 0], parent)
    assert np.allclose(pred[:, 1], parent + 1)


def test_predicts_every_target_and_honours_the_budget(synthetic_slide):
    task, truth, _ = build_holdout(synthetic_slide, n_genes=3)
    m = dist_mod.Dist(epochs=3, **SMALL)
    pred = m.predict(task)
    assert pred.shape == truth.shape and np.all(np.isfinite(pred)) and pred.min() >= 0
    assert m.details_["epochs"] == 3
    capped = ImputationTask(**{**task.__dict__, "budget_s": 0.0})
    m2 = dist_mod.Dist(epochs=50, **SMALL)
    m2.predict(capped)
    assert m2.details_["epochs"] == 1  # stops after the first epoch over the budget


def test_deterministic_with_seed(square_task):
    task = square_task()
    a = dist_mod.Dist(epochs=2, **SMALL).predict(task)
    b = dist_mod.Dist(epochs=2, **SMALL).predict(task)
    c = dist_mod.Dist(epochs=2, **SMALL).predict(ImputationTask(**{**task.__dict__, "seed": 1}))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_training_learns_the_low_to_high_step(square_task):
    """On a smooth field, a trained net predicts the hidden spots better than its untrained start."""
    task = square_task(n=24, genes=1)
    truth = task.target_rows * 10.0 + task.target_cols
    untrained = dist_mod.Dist(epochs=0, **SMALL).predict(task)[:, 0]
    trained = dist_mod.Dist(epochs=60, lr=3e-3, **SMALL).predict(task)[:, 0]
    assert np.abs(trained - truth).mean() < np.abs(untrained - truth).mean()


def test_untrained_identity_network_on_hex_reads_the_parent_cell(identity_net, synthetic_slide):
    """Hex lattice: each target gets the measured-level image's value at its parent cell
    ``(row // 2, col // 2)`` (a measured spot, or the mean of its nearest ones)."""
    task, _, _ = build_holdout(synthetic_slide, n_genes=2)
    pred = dist_mod.Dist(epochs=0, **SMALL).predict(task)
    a, b = task.measured_rows // 2, task.measured_cols // 2
    pa, pb = task.target_rows // 2, task.target_cols // 2
    origin = (int(min(a.min(), pa.min())), int(min(b.min(), pb.min())))
    shape = (int(max(a.max(), pa.max())) - origin[0] + 1, int(max(b.max(), pb.max())) - origin[1] + 1)
    img = dist_mod._level_image(a, b, task.measured_values, origin, shape, "hex")
    expected = img[:, pa - origin[0], pb - origin[1]].T
    assert np.allclose(pred, np.maximum(expected, 0), atol=1e-5)
