"""Ridge regression with the penalty chosen by generalised cross-validation (closed form from one SVD)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Ridge penalties tried by GCV, as multiples of the mean squared singular value of the features.
RIDGE_GRID: tuple[float, ...] = tuple(float(a) for a in np.geomspace(1e-3, 1e3, 25))


def ridge_gcv(
    x: np.ndarray, y: np.ndarray, grid: tuple[float, ...] = RIDGE_GRID, shared: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge regression of each column of ``y`` on ``x``, penalty per column by GCV.

    ``x`` and ``y`` are centred here (an intercept is fitted and returned). The candidates are
    ``grid`` times the mean squared singular value of centred ``x``, plus an infinite penalty
    (``beta = 0``: intercept only).

    Parameters
    ----------
    x
        (m, F) predictors (standardise them first: one penalty for all columns).
    y
        (m, G) responses.
    grid
        Relative penalties.

    Returns
    -------
    (beta, intercept, penalty)
        (F, G) coefficients, (G,) intercepts and (G,) chosen penalties (``inf`` for "no model").
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    m, n_feat = x.shape
    xm = x.mean(axis=0)
    ym = y.mean(axis=0)
    xc = x - xm
    yc = y - ym
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    keep = s > s.max() * 1e-10 if s.size else np.zeros(0, bool)
    u, s, vt = u[:, keep], s[keep], vt[keep]
    uty = u.T @ yc  # (k, G)
    tss = (yc * yc).sum(axis=0)
    outside = tss - (uty * uty).sum(axis=0)  # part of y outside the span of x
    scale = float((s * s).mean()) if s.size else 1.0
    lams = np.asarray(grid, dtype=np.float64) * scale
    norm = np.where(tss > 0, 1.0 / np.where(tss > 0, tss, 1.0), 0.0)
    scores = [m * tss / max(m - 1.0, 1e-9) ** 2]  # beta = 0: df = 1 (intercept)
    cands = [np.inf]
    for lam in lams:
        shrink = (s * s) / (s * s + lam)
        rss = outside + (((1.0 - shrink)[:, None] * uty) ** 2).sum(axis=0)
        df = 1.0 + shrink.sum()
        if df >= m - 1:
            continue
        scores.append(m * rss / (m - df) ** 2)
        cands.append(lam)
    scores = np.asarray(scores)
    cands = np.asarray(cands)
    if shared:
        # one penalty for all genes: the mean GCV score, each gene scaled by its total variance
        best_lam = np.full(y.shape[1], cands[int(np.argmin((scores * norm[None, :]).mean(axis=1)))])
    else:
        best_lam = cands[np.argmin(scores, axis=0)]
    beta = np.zeros((n_feat, y.shape[1]))
    fitted = np.isfinite(best_lam)
    for lam in np.unique(best_lam[fitted]):
        cols = np.flatnonzero(best_lam == lam)
        beta[:, cols] = vt.T @ ((s / (s * s + lam))[:, None] * uty[:, cols])
    intercept = ym - xm @ beta
    return beta, intercept, best_lam


@dataclass
class FeatureTerm:
    """A ridge model of a smoother's leave-one-out residual on per-position features (e.g. H&E).

    A partially linear model: ``y(x) = g(x) + h(x) @ beta + noise``. A linear smoother ``S`` removes
    most of the smooth field ``g``, so the smoother's residual at a measured spot follows the
    features' residual under the same smoother: ``y_i - S_{-i} y ~ (h_i - S_{-i} h) @ beta``; at a
    target ``t`` the term is ``(h(t) - S h (t)) @ beta``. With ``design="both"`` the raw features are
    predictors too (the smoother's error also depends on the tissue itself, at edges and in thin
    layers). Features are centred before smoothing, so smoothers whose weights do not sum to one
    (kriging) are handled like those that do. Predictors are standardised on the measured spots;
    the ridge penalty is chosen by GCV (:func:`ridge_gcv`), with "no term" (``beta = 0``) among the
    candidates.

    Use :meth:`fit`, then :meth:`at` for the term at any positions given the smoother's weights from
    the measured spots to them.
    """

    beta: np.ndarray  # (F', G) on the kept standardised predictors
    centre: np.ndarray  # (F,) feature means over the measured spots
    mean: np.ndarray  # (P,) predictor means (P = F or 2F)
    scale: np.ndarray  # (P,) predictor standard deviations
    keep: np.ndarray  # (P,) bool, predictors that vary
    design: str
    penalties: list
    low: np.ndarray | None = None  # (P',) range of the kept standardised predictors at the measured spots:
    high: np.ndarray | None = None  # targets outside it are clipped to it (no extrapolation); None: no clip

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        smoothed_loo: np.ndarray,
        residual: np.ndarray,
        design: str = "both",
        penalty: str = "shared",
        clip: bool = True,
    ) -> FeatureTerm | None:
        """Fit on the measured spots.

        Parameters
        ----------
        features
            (m, F) features of the measured spots.
        smoothed_loo
            (m, F) the smoother's leave-one-out prediction of the *centred* features
            (``features - features.mean(0)``) at the measured spots.
        residual
            (m, G) the smoother's leave-one-out residual of the genes.
        clip
            At targets, clip each standardised predictor to its range at the measured spots: a
            linear term is not extrapolated to image features the spots never showed (tissue folds,
            bubbles, edges of the image). On the shared slides this added 0.002 mean hidden-spot PCC
            to the base predictor over 24 tasks, +0.007-0.024 on the olfactory bulb
            (``benchmarks/results/he_clip.md``).

        Returns ``None`` when no predictor varies.
        """
        if design not in ("both", "residual", "raw"):
            raise ValueError(f"design must be 'both', 'residual' or 'raw', not {design!r}")
        f = np.asarray(features, dtype=np.float64)
        centre = f.mean(axis=0)
        x = cls._predictors(design, f - centre, smoothed_loo, f)
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        keep = scale > 1e-9 * (1.0 + np.abs(mean))
        if not keep.any():
            return None
        z = (x[:, keep] - mean[keep]) / scale[keep]
        beta, _, lam = ridge_gcv(z, residual, shared=penalty == "shared")
        pens = [None if not np.isfinite(v) else float(v) for v in lam]
        low, high = (z.min(axis=0), z.max(axis=0)) if clip else (None, None)
        return cls(beta, centre, mean, scale, keep, design, pens, low, high)

    @staticmethod
    def _predictors(design: str, fc: np.ndarray, smoothed: np.ndarray, raw: np.ndarray) -> np.ndarray:
        parts = []
        if design in ("both", "residual"):
            parts.append(fc - smoothed)
        if design in ("both", "raw"):
            parts.append(raw)
        return np.hstack(parts)

    def at(self, features_dst: np.ndarray, smoothed_dst: np.ndarray) -> np.ndarray:
        """(t, G) the term at positions with features ``features_dst`` (t, F), where
        ``smoothed_dst`` (t, F) is the smoother's prediction there of the measured spots' centred
        features (``features_src - self.centre``)."""
        fd = np.asarray(features_dst, dtype=np.float64)
        x = self._predictors(self.design, fd - self.centre, smoothed_dst, fd)
        z = (x[:, self.keep] - self.mean[self.keep]) / self.scale[self.keep]
        if self.low is not None:
            z = np.clip(z, self.low, self.high)
        return z @ self.beta

    @property
    def active(self) -> bool:
        """Whether the term is not identically zero (some gene got a finite penalty)."""
        return any(p is not None for p in self.penalties)
