"""Hold-out accuracy metrics: Pearson r, RMSE, MAE per gene, and SSIM of a gene's grid image.

Definitions follow the benchmark protocol (design.md, "Hold-out benchmark protocol", step 5):

* PCC, RMSE and MAE are computed per gene over the hidden spots. PCC is ``None`` when either the
  truth or the prediction is constant (it is undefined), and such genes are left out of medians.
* SSIM compares the truth's grid image with the prediction's grid image over the tissue bounding box:
  square lattices use ``(row, col)``, hex lattices offset coordinates ``(row, col // 2)``; positions
  with no usable spot are 0, measured positions carry their true values in both images, hidden ones
  the truth or the prediction. ``data_range`` is the truth image's maximum; other parameters are
  scikit-image's defaults, except that the window shrinks on small images (see :func:`ssim_grid`).
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


def pcc(truth: np.ndarray, pred: np.ndarray) -> float | None:
    """Pearson correlation of two 1-D arrays; ``None`` when either is constant or empty."""
    t = np.asarray(truth, dtype=np.float64).ravel()
    p = np.asarray(pred, dtype=np.float64).ravel()
    if t.size < 2 or t.size != p.size:
        return None
    # an array whose spread is only rounding error (relative 1e-9) counts as constant
    tol_t = 1e-9 * np.sqrt(t.size) * max(1.0, float(np.abs(t).max()))
    tol_p = 1e-9 * np.sqrt(p.size) * max(1.0, float(np.abs(p).max()))
    t = t - t.mean()
    p = p - p.mean()
    st = np.sqrt((t * t).sum())
    sp_ = np.sqrt((p * p).sum())
    if st <= tol_t or sp_ <= tol_p:
        return None
    r = float((t * p).sum() / (st * sp_))
    return float(np.clip(r, -1.0, 1.0))


def rmse(truth: np.ndarray, pred: np.ndarray) -> float | None:
    """Root mean squared error; ``None`` for empty input."""
    t = np.asarray(truth, dtype=np.float64).ravel()
    if t.size == 0:
        return None
    return float(np.sqrt(np.mean((np.asarray(pred, dtype=np.float64).ravel() - t) ** 2)))


def mae(truth: np.ndarray, pred: np.ndarray) -> float | None:
    """Mean absolute error; ``None`` for empty input."""
    t = np.asarray(truth, dtype=np.float64).ravel()
    if t.size == 0:
        return None
    return float(np.mean(np.abs(np.asarray(pred, dtype=np.float64).ravel() - t)))


def grid_index(rows: np.ndarray, cols: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Image indices of spots for SSIM: square ``(row, col)``, hex offset ``(row, col // 2)``.

    Indices start at 0 at the bounding box of the given spots.
    """
    r = np.asarray(rows, dtype=np.int64)
    c = np.asarray(cols, dtype=np.int64)
    if kind == "hex":
        c = c // 2
    return r - r.min(), c - c.min()


def grid_image(ii: np.ndarray, jj: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A float64 image of ``shape`` that is 0 everywhere except ``values`` at ``(ii, jj)``."""
    img = np.zeros(shape, dtype=np.float64)
    img[ii, jj] = values
    return img


def ssim_window(shape: tuple[int, int], default: int = 7) -> int | None:
    """The SSIM window: scikit-image's default 7, or the largest odd size that fits (>= 3).

    ``None`` when the image is smaller than 3 pixels along an axis (SSIM undefined).
    """
    w = min(default, *shape)
    if w % 2 == 0:
        w -= 1
    return w if w >= 3 else None


def ssim_images(truth_img: np.ndarray, pred_img: np.ndarray) -> float | None:
    """SSIM of two grid images with ``data_range`` = the truth's maximum.

    scikit-image defaults (uniform 7x7 window, K1=0.01, K2=0.03), except that on images smaller
    than 7 pixels along an axis the window is the largest odd size that fits (at least 3). ``None``
    when the truth's maximum is not positive or the image is smaller than 3x3.
    """
    t = np.asarray(truth_img, dtype=np.float64)
    p = np.asarray(pred_img, dtype=np.float64)
    rng = float(t.max()) if t.size else 0.0
    win = ssim_window(t.shape)
    if win is None or not rng > 0:
        return None
    return float(structural_similarity(t, p, data_range=rng, win_size=win))


def ssim_grid(
    rows: np.ndarray,
    cols: np.ndarray,
    kind: str,
    truth: np.ndarray,
    pred: np.ndarray,
) -> float | None:
    """SSIM of one gene over the tissue bounding box of the given spots.

    Parameters
    ----------
    rows, cols
        Array coordinates of every usable spot (measured and hidden).
    kind
        ``"hex"`` or ``"square"``.
    truth
        True values at those spots.
    pred
        Values to compare: the prediction at hidden spots and the true value at measured ones.
    """
    ii, jj = grid_index(rows, cols, kind)
    shape = (int(ii.max()) + 1, int(jj.max()) + 1) if ii.size else (0, 0)
    return ssim_images(grid_image(ii, jj, truth, shape), grid_image(ii, jj, pred, shape))


def median_or_none(values) -> float | None:
    """Median of the non-``None`` finite values, or ``None`` when there are none."""
    v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    return float(np.median(v)) if v.size else None
