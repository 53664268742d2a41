"""Shared helpers of the method tests."""

from __future__ import annotations

import numpy as np
import pytest

from napari_s2s.core.methods import ImputationTask


def make_square_task(values_fn=lambda r, c, g: r * 10.0 + c + g, n=16, genes=2, noise=0.0, seed=0,
                     targets=None) -> ImputationTask:
    """A square-lattice task: measured on the even/even sub-lattice of an ``n x n`` grid, values
    ``values_fn(row, col, gene)`` (plus Gaussian ``noise``), targets every other node by default."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[0:n, 0:n]
    r, c = rr.ravel(), cc.ravel()
    meas = (r % 2 == 0) & (c % 2 == 0)
    vals = np.stack([values_fn(r[meas], c[meas], g) for g in range(genes)], axis=1).astype(np.float64)
    vals = vals + rng.normal(0, noise, vals.shape) if noise else vals
    tr, tc = (r[~meas], c[~meas]) if targets is None else targets
    return ImputationTask(
        kind="square",
        measured_rows=r[meas],
        measured_cols=c[meas],
        measured_values=vals.astype(np.float32),
        genes=tuple(f"g{i}" for i in range(genes)),
        target_rows=np.asarray(tr),
        target_cols=np.asarray(tc),
    )


@pytest.fixture
def square_task():
    """:func:`make_square_task`."""
    return make_square_task
