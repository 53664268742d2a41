"""Kriging (Gaussian-process regression) of gene values measured at spots.

Each gene is modelled as a stationary Gaussian field plus independent noise (the "nugget": counting
noise of the spot), ``y(s) = mu + f(s) + e``, with ``f`` of Matern covariance ``snr * k(|s - s'| / ell)``
in units of the noise variance. The prediction at a new position is the posterior mean
``mu + k_t' (K + I)^-1 (y - mu)``: a linear smoother whose weights know how far the target is from each
measured spot and how noisy the spots are. That is what a Gaussian-weighted mean cannot know: its
bandwidth, chosen by leave-one-out on the measured lattice (spots 2 pitches apart), also sets how much
it smooths a target 1 pitch away; kriging separates the field's scale (``ell``) from the noise
(``snr``), so a closer target is predicted from closer spots without smoothing the noise less.

Hyper-parameters (kernel order ``nu``, length ``ell`` in pitches, signal-to-noise ``snr``) are chosen
on the measured spots only, by the closed-form leave-one-out error of the standardised genes (one
``ell`` for all genes; ``snr`` shared or per gene). Large slides choose them on square crops of the
lattice (:data:`FIT_SPOTS` spots at most per crop) and predict with the exact posterior up to
:data:`MAX_EXACT` spots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

#: Candidate lengths of the field (pitch units of the slide's full lattice).
ELLS: tuple[float, ...] = tuple(float(x) for x in np.round(np.geomspace(0.5, 24.0, 17), 4))
#: Candidate signal-to-noise variance ratios.
SNRS: tuple[float, ...] = tuple(float(x) for x in np.round(np.geomspace(0.02, 50.0, 15), 4))
#: Candidate kernel orders (Matern nu): 0.5 exponential, 1.5, 2.5.
NUS: tuple[float, ...] = (0.5, 1.5, 2.5)
#: Spots per crop when choosing hyper-parameters on a large slide.
FIT_SPOTS = 700
#: Most measured spots predicted with the exact posterior (beyond: nearest-neighbour kriging).
MAX_EXACT = 6000
#: Neighbours of nearest-neighbour kriging.
NEIGHBOURS = 96


def matern(d: np.ndarray, ell: float, nu: float) -> np.ndarray:
    """Matern correlation of distances ``d`` for length ``ell`` and order ``nu`` (0.5, 1.5 or 2.5)."""
    r = np.asarray(d, dtype=np.float64) / ell
    if nu == 0.5:
        return np.exp(-r)
    if nu == 1.5:
        a = np.sqrt(3.0) * r
        return (1.0 + a) * np.exp(-a)
    if nu == 2.5:
        a = np.sqrt(5.0) * r
        return (1.0 + a + a * a / 3.0) * np.exp(-a)
    raise ValueError(f"nu must be 0.5, 1.5 or 2.5, not {nu!r}")


def standardise(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column mean, standard deviation (constant columns get 1) and the standardised values."""
    v = np.asarray(values, dtype=np.float64)
    mu = v.mean(axis=0)
    sd = v.std(axis=0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    return mu, sd, (v - mu) / sd


def loo_table(phys: np.ndarray, z: np.ndarray, ell: float, nu: float, snrs=SNRS) -> np.ndarray:
    """(len(snrs), G) mean squared leave-one-out errors of standardised genes ``z`` for one ``ell``.

    Closed form: the LOO residual of spot i is ``[K^-1 z]_i / [K^-1]_ii`` with ``K = snr k + I``; one
    eigen-decomposition of ``k`` serves every ``snr``.
    """
    w, v = np.linalg.eigh(matern(cdist(phys, phys), ell, nu))
    w = np.maximum(w, 0.0)
    vz = v.T @ z
    v2 = v * v
    out = np.empty((len(snrs), z.shape[1]))
    for j, snr in enumerate(snrs):
        lam = snr * w + 1.0
        kdiag = v2 @ (1.0 / lam)
        res = (v @ (vz / lam[:, None])) / kdiag[:, None]
        out[j] = (res * res).mean(axis=0)
    return out


def _crops(phys: np.ndarray, size: int, rng: np.random.Generator, n_crops: int = 3) -> list[np.ndarray]:
    """Index sets of up to ``n_crops`` square windows holding about ``size`` spots each."""
    m = len(phys)
    if m <= size:
        return [np.arange(m)]
    lo, hi = phys.min(0), phys.max(0)
    area = float(np.prod(np.maximum(hi - lo, 1e-9)))
    side = np.sqrt(area * size / m)
    tree = cKDTree(phys)
    out = []
    for c in rng.choice(m, size=min(n_crops, m), replace=False):
        idx = np.asarray(tree.query_ball_point(phys[c], side * 0.6, p=np.inf))
        if len(idx) > 1.5 * size:
            idx = np.sort(tree.query(phys[c], k=size, p=np.inf)[1])
        if len(idx) >= 8:
            out.append(np.sort(idx))
    return out or [np.sort(rng.choice(m, size=size, replace=False))]


@dataclass
class Kriging:
    """A fitted kriging smoother: kernel order, length, signal-to-noise ratio(s)."""

    nu: float
    ell: float
    snr: np.ndarray  # (G,) or (1,) shared
    loo_score: float = float("nan")

    @classmethod
    def fit(
        cls,
        phys: np.ndarray,
        values: np.ndarray,
        nus=NUS,
        ells=ELLS,
        snrs=SNRS,
        per_gene_snr: bool = False,
        seed: int = 0,
    ) -> "Kriging":
        """Choose ``nu``, ``ell`` (shared) and ``snr`` by leave-one-out on the measured spots."""
        phys = np.asarray(phys, dtype=np.float64)
        _, _, z = standardise(values)
        crops = _crops(phys, FIT_SPOTS, np.random.default_rng(seed))
        best = None
        for nu in nus:
            for ell in ells:
                tab = sum(loo_table(phys[c], z[c], ell, nu, snrs) * len(c) for c in crops)
                tab = tab / sum(len(c) for c in crops)
                if per_gene_snr:
                    j = np.argmin(tab, axis=0)
                    score = float(tab[j, np.arange(tab.shape[1])].mean())
                    snr = np.asarray(snrs)[j]
                else:
                    j = int(np.argmin(tab.mean(axis=1)))
                    score = float(tab[j].mean())
                    snr = np.array([snrs[j]])
                if best is None or score < best.loo_score:
                    best = cls(float(nu), float(ell), snr.astype(np.float64), score)
        return best

    # ------------------------------------------------------------------ weights
    def _groups(self, n_genes: int) -> list[tuple[float, np.ndarray]]:
        snr = np.broadcast_to(self.snr, (n_genes,)) if self.snr.size == 1 else self.snr
        return [(float(s), np.flatnonzero(snr == s)) for s in np.unique(snr)]

    def weights(self, src: np.ndarray, dst: np.ndarray, snr: float, exclude_self: bool = False) -> np.ndarray:
        """(t, m) posterior-mean weights from ``src`` to ``dst`` (exact posterior).

        ``exclude_self``: ``dst is src`` and each spot is predicted from the others (leave-one-out).
        """
        src = np.asarray(src, dtype=np.float64)
        kss = snr * matern(cdist(src, src), self.ell, self.nu) + np.eye(len(src))
        kinv = np.linalg.inv(kss)
        if exclude_self:
            return np.eye(len(src)) - kinv / np.diag(kinv)[:, None]
        kts = snr * matern(cdist(np.asarray(dst, dtype=np.float64), src), self.ell, self.nu)
        return kts @ kinv

    def predict(self, src: np.ndarray, values: np.ndarray, dst: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        """(t, G) posterior means at ``dst`` (``exclude_self``: leave-one-out at ``src``)."""
        vals = np.asarray(values, dtype=np.float64)
        one = vals.ndim == 1
        if one:
            vals = vals[:, None]
        mu = vals.mean(axis=0)
        out = np.empty((len(src) if exclude_self else len(dst), vals.shape[1]))
        for snr, cols in self._groups(vals.shape[1]):
            if len(src) <= MAX_EXACT:
                w = self.weights(src, dst, snr, exclude_self)
                out[:, cols] = mu[cols] + w @ (vals[:, cols] - mu[cols])
            else:
                out[:, cols] = mu[cols] + _local(self, src, vals[:, cols] - mu[cols], dst, snr, exclude_self)
        return out[:, 0] if one else out


def _local(kr: Kriging, src, resid, dst, snr, exclude_self, chunk: int = 2048) -> np.ndarray:
    """Nearest-neighbour kriging: each target from its :data:`NEIGHBOURS` nearest spots."""
    src = np.asarray(src, dtype=np.float64)
    dst = src if exclude_self else np.asarray(dst, dtype=np.float64)
    n = min(NEIGHBOURS + int(exclude_self), len(src))
    tree = cKDTree(src)
    out = np.empty((len(dst), resid.shape[1]))
    for s in range(0, len(dst), chunk):
        d, idx = tree.query(dst[s : s + chunk], k=n)
        if exclude_self:
            d, idx = d[:, 1:], idx[:, 1:]
        p = src[idx]  # (B, n, 2)
        dd = np.sqrt(((p[:, :, None, :] - p[:, None, :, :]) ** 2).sum(-1))
        kss = snr * matern(dd, kr.ell, kr.nu) + np.eye(idx.shape[1])
        kts = snr * matern(d, kr.ell, kr.nu)
        w = np.linalg.solve(kss, kts[..., None])[..., 0]
        out[s : s + chunk] = np.einsum("bn,bng->bg", w, resid[idx])
    return out
