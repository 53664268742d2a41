"""Metrics against values computed by hand or by an independent formula."""

from __future__ import annotations

import numpy as np
import pytest

from napari_s2s.core.evaluation.metrics import (
    grid_index,
    mae,
    median_or_none,
    pcc,
    rmse,
    ssim_grid,
    ssim_images,
    ssim_window,
)


def test_pcc_hand_computed():
    # deviations (-1.5, -0.5, 0.5, 1.5) and (-1.5, 0.5, -0.5, 1.5): 4 / sqrt(5 * 5) = 0.8
    assert pcc([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert pcc([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pcc([0, 1, 0, 1], [5, 7, 5, 7]) == pytest.approx(1.0)


def test_pcc_undefined_is_none():
    assert pcc([1, 1, 1], [1, 2, 3]) is None
    assert pcc([1, 2, 3], [2, 2, 2]) is None
    assert pcc([1.0], [2.0]) is None
    # spread at rounding-error level is still constant
    assert pcc([1, 2, 3], np.full(3, 0.3) + np.array([0, 1e-17, 5e-17])) is None


def test_rmse_mae_hand_computed():
    truth = [0, 0, 0, 0]
    pred = [1, -1, 2, 0]
    assert rmse(truth, pred) == pytest.approx(np.sqrt(6 / 4))
    assert mae(truth, pred) == pytest.approx(1.0)
    assert rmse([], []) is None and mae([], []) is None


def test_ssim_window_fits_small_images():
    assert ssim_window((20, 30)) == 7
    assert ssim_window((5, 30)) == 5
    assert ssim_window((6, 30)) == 5
    assert ssim_window((4, 4)) == 3
    assert ssim_window((2, 9)) is None


def _ssim_one_window(x, y, data_range):
    """SSIM of a 3x3 image pair with a 3x3 window (one window), written out from the definition
    (Wang et al. 2004, sample covariances as in scikit-image)."""
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    ux, uy = x.mean(), y.mean()
    vx, vy = x.var(ddof=1), y.var(ddof=1)
    vxy = ((x - ux) * (y - uy)).sum() / (x.size - 1)
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))


def test_ssim_matches_definition_on_one_window():
    x = np.array([[0.0, 1.0, 2.0], [1.0, 3.0, 1.0], [0.5, 2.0, 4.0]])
    y = np.array([[0.2, 1.1, 1.5], [1.0, 2.0, 1.2], [0.0, 2.5, 3.0]])
    assert ssim_images(x, y) == pytest.approx(_ssim_one_window(x, y, x.max()), rel=1e-9)
    assert ssim_images(x, x) == pytest.approx(1.0)
    assert ssim_images(np.zeros((5, 5)), np.ones((5, 5))) is None  # data_range 0


def test_grid_index_square_and_hex_offset():
    ii, jj = grid_index(np.array([2, 3, 2]), np.array([4, 5, 6]), "square")
    assert ii.tolist() == [0, 1, 0] and jj.tolist() == [0, 1, 2]
    # hex offset coordinates (row, col // 2): (2, 4) -> (0, 0), (3, 5) -> (1, 0), (2, 6) -> (0, 1)
    ii, jj = grid_index(np.array([2, 3, 2]), np.array([4, 5, 6]), "hex")
    assert ii.tolist() == [0, 1, 0] and jj.tolist() == [0, 0, 1]


def test_ssim_grid_hex_layout_and_zero_fill():
    # hex checkerboard 4 rows x 8 cols, one spot missing (stays 0 in both images)
    rr, cc = np.mgrid[0:4, 0:8]
    keep = (rr + cc) % 2 == 0
    rows, cols = rr[keep][1:], cc[keep][1:]
    rng = np.random.default_rng(0)
    truth = rng.random(rows.size) + 0.5
    pred = truth + rng.normal(0, 0.2, rows.size)
    # the same computed through an explicit offset-coordinate image
    img_t = np.zeros((4, 4))
    img_p = np.zeros((4, 4))
    img_t[rows, cols // 2] = truth
    img_p[rows, cols // 2] = pred
    assert ssim_grid(rows, cols, "hex", truth, pred) == pytest.approx(ssim_images(img_t, img_p))
    assert ssim_grid(rows, cols, "hex", truth, truth) == pytest.approx(1.0)


def test_median_skips_undefined():
    assert median_or_none([None, 1.0, 3.0, None, 2.0]) == 2.0
    assert median_or_none([None, None]) is None
