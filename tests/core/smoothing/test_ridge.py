"""The H&E term (a ridge model of a smoother's residual on image features): no extrapolation."""

from __future__ import annotations

import numpy as np

from napari_s2s.core.smoothing.ridge import FeatureTerm


def _fitted(clip: bool):
    rng = np.random.default_rng(0)
    m = 120
    feats = rng.normal(size=(m, 3))
    smoothed = 0.3 * feats + rng.normal(0, 0.1, (m, 3))  # what a smoother predicts of them, leave-one-out
    resid = (feats - smoothed) @ np.array([[1.0], [0.5], [0.0]]) + rng.normal(0, 0.2, (m, 1))
    return FeatureTerm.fit(feats, smoothed, resid, clip=clip), feats, smoothed


def test_targets_inside_the_measured_range_are_unchanged_by_clipping():
    clipped, feats, smoothed = _fitted(True)
    free, _, _ = _fitted(False)
    assert clipped.low is not None and free.low is None
    # the measured spots themselves (predictors within their own range by definition)
    np.testing.assert_allclose(clipped.at(feats, smoothed), free.at(feats, smoothed))
    np.testing.assert_allclose(clipped.beta, free.beta)


def test_targets_outside_the_measured_range_are_not_extrapolated():
    clipped, feats, smoothed = _fitted(True)
    free, _, _ = _fitted(False)
    far = np.array([[50.0, 0.0, 0.0], [-50.0, 0.0, 0.0]])  # a fold or bubble: far outside what spots showed
    sm = np.zeros_like(far)
    t_free, t_clip = free.at(far, sm)[:, 0], clipped.at(far, sm)[:, 0]
    measured = clipped.at(feats, smoothed)[:, 0]
    assert np.abs(t_free).max() > 10 * np.abs(measured).max()  # linear: grows without bound
    # clipped: each predictor at its measured extreme, so the term stays of the measured size
    assert np.abs(t_clip).max() < 3 * np.abs(measured).max()
    again = clipped.at(np.array([[5.0, 0.0, 0.0], [500.0, 0.0, 0.0]]), np.zeros((2, 3)))
    assert np.isclose(again[0, 0], again[1, 0])  # beyond the range, how far no longer matters
