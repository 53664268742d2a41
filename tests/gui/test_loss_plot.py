"""The live loss plot: a running mean over the noisy per-step losses, drawn with the raw trace."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_s2s.gui.loss_plot import LossPlot, running_mean

pytestmark = pytest.mark.gui


def _noisy_decay(n=600, seed=0):
    """Per-step losses as training gives them: a slow decay under batch noise (log-normal)."""
    rng = np.random.default_rng(seed)
    steps = np.arange(1, n + 1)
    trend = np.log10(0.8 * np.exp(-steps / 300.0) + 0.3)
    return steps, trend, trend + rng.normal(0.0, 0.08, n)


def test_running_mean_follows_the_trend_and_removes_the_noise():
    steps, trend, noisy = _noisy_decay()
    smooth = np.asarray(running_mean(list(noisy), 40))
    assert np.abs(np.diff(smooth)).mean() < 0.1 * np.abs(np.diff(noisy)).mean()  # the noise goes
    # the trend stays: close to it after the warm-up (an exponential mean lags a falling curve a little)
    assert np.abs(smooth[100:] - trend[100:]).max() < 0.05
    assert smooth[-1] < smooth[100]  # still falling, as the loss does
    # bias-corrected: the first point is itself, a constant stays constant
    assert running_mean([2.0, 2.0, 2.0], 50) == pytest.approx([2.0, 2.0, 2.0])
    assert running_mean([3.0], 10) == [3.0]


def test_plot_draws_raw_and_running_mean_and_says_the_running_value(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(300, 90)
    steps, _, noisy = _noisy_decay()
    plot.set_points([(int(s), float(10.0**v)) for s, v in zip(steps, noisy)] + [(601, math.nan), (602, None)])
    pts = plot.points()
    assert 400 <= len(pts) <= 401 and pts[-1][0] == 600  # subsampled, the last step kept, NaN/None dropped
    img = plot.grab().toImage()  # paints without error
    assert img.width() == 300
    # faint raw trace and bright running mean: both blues are on the canvas
    colours = {img.pixelColor(x, y).name() for x in range(0, 300, 2) for y in range(0, 76, 2)}
    assert "#78c8ff" in colours  # the running mean's colour, fully opaque
    assert len([c for c in colours if c not in ("#262930", "#5a5e68", "#78c8ff")]) > 3  # the faint trace, blended
