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

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

#: Candidate lengths of the field (pitch units of the slide's full lattice).
ELLS: tuple[float, ...] = tuple(float(x) for x in np.round(np.geomspace(0.5, 24.0, 12), 4))
#: Candidate signal-to-noise variance ratios.
SNRS: tuple[float, ...] = tuple(float(x) for x in np.round(np.geomspace(0.02, 50.0, 15), 4))
#: Candidate kernel orders (Matern nu): 0.5 exponential, 1.5, 2.5.
NUS: tuple[float, ...] = (0.5, 1.5, 2.5)
#: Spots per crop when choosing hyper-parameters on a large slide.
FIT_SPOTS = 700
#: Most measured spots predicted with the exact posterior (beyond: nearest-neighbour kriging).
MAX_EXACT = 6000
#: Neighbours of nearest-neighbour kriging.
NEIGHBOURS = 48


def matern(d: np.ndarray, ell: float, nu: float) -> np.ndarray:
    """Matern correlation of distances ``d`` for length ``ell`` and order ``nu`` (0.5, 1.5 or 2.5),
    in the precision of ``d`` (float32 or float64)."""
    d = np.asarray(d)
    if d.dtype not in (np.float32, np.float64):
        d = d.astype(np.float64)
    r = d / float(ell)  # a Python float keeps the array's precision
    if nu == 0.5:
        return np.exp(-r)
    if nu == 1.5:
        a = math.sqrt(3.0) * r
        return (1.0 + a) * np.exp(-a)
    if nu == 2.5:
        a = math.sqrt(5.0) * r
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
    """A fitted kriging smoother: kernel order ``nu``, length ``ell`` (pitches) and signal-to-noise
    variance ratio ``snr``, shared by all genes (standardised)."""

    nu: float
    ell: float
    snr: float
    loo_score: float = float("nan")

    @classmethod
    def fit(cls, phys: np.ndarray, values: np.ndarray, nus=(0.5,), ells=ELLS, snrs=SNRS, seed: int = 0) -> Kriging:
        """Choose ``nu``, ``ell`` and ``snr`` by the leave-one-out error of the standardised genes on
        the measured spots (on square crops of at most :data:`FIT_SPOTS` spots for large slides).

        The exponential kernel (``nu=0.5``, the default candidate set) was the best single choice on
        the shared slides; choosing ``nu`` too (``nus=NUS``) did not help there.
        """
        phys = np.asarray(phys, dtype=np.float64)
        _, _, z = standardise(values)
        crops = _crops(phys, FIT_SPOTS, np.random.default_rng(seed))
        n = sum(len(c) for c in crops)
        best = None
        for nu in nus:
            for ell in ells:
                tab = sum(loo_table(phys[c], z[c], ell, nu, snrs).mean(axis=1) * len(c) for c in crops) / n
                j = int(np.argmin(tab))
                if best is None or tab[j] < best.loo_score:
                    best = cls(float(nu), float(ell), float(snrs[j]), float(tab[j]))
        return best

    def covariance(self, a: np.ndarray, b: np.ndarray, dtype=np.float64) -> np.ndarray:
        """Signal covariance (in noise-variance units) between positions ``a`` and ``b``."""
        d = cdist(np.asarray(a, np.float64), np.asarray(b, np.float64)).astype(dtype, copy=False)
        return (self.snr * matern(d, self.ell, self.nu)).astype(dtype, copy=False)

    def on(self, src: np.ndarray) -> KrigingSolver:
        """The smoother conditioned on spots at ``src``: factorised once, applied to any columns."""
        return KrigingSolver(self, src)

    def apply(self, src: np.ndarray, v: np.ndarray, dst: np.ndarray | None = None) -> np.ndarray:
        """Posterior means at ``dst`` of centred columns ``v`` (m, C) observed at ``src``
        (``dst=None``: leave-one-out at ``src``); see :class:`KrigingSolver`."""
        solver = self.on(src)
        return solver.loo(v) if dst is None else solver.predict(v, dst)

    def weights(self, src: np.ndarray, dst: np.ndarray | None = None) -> np.ndarray:
        """(t, m) the smoother's weights (``dst=None``: leave-one-out weights at ``src``); for small
        slides and tests, :meth:`apply` avoids building them."""
        return self.apply(src, np.eye(len(src)), dst)

    def predict(self, src: np.ndarray, values: np.ndarray, dst: np.ndarray | None = None) -> np.ndarray:
        """(t, G) kriging predictions of ``values`` (m, G) at ``dst`` (``None``: leave-one-out)."""
        vals = np.asarray(values, dtype=np.float64)
        mu = vals.mean(axis=0)
        return mu + self.apply(src, vals - mu, dst)


class KrigingSolver:
    """A :class:`Kriging` smoother conditioned on fixed measured positions.

    The covariance of the spots is factorised once (Cholesky); :meth:`predict` and :meth:`loo`
    then smooth any number of centred columns (genes, features). The field's mean is not modelled
    here: callers centre their columns and add the mean back. Slides with more than
    :data:`MAX_EXACT` spots use nearest-neighbour kriging instead (:data:`NEIGHBOURS` spots).
    """

    def __init__(self, kriging: Kriging, src: np.ndarray) -> None:
        self.kriging = kriging
        self.src = np.asarray(src, dtype=np.float64)
        self.exact = len(self.src) <= MAX_EXACT
        self._kinv = None
        self._kinv_diag = None
        if self.exact:
            kss = kriging.covariance(self.src, self.src)
            kss[np.diag_indices_from(kss)] += 1.0
            # the inverse once; every solve is then a matrix product
            self._kinv = spd_inverse(kss)

    def predict(self, v: np.ndarray, dst: np.ndarray, block: int = 4096) -> np.ndarray:
        """(t, C) posterior means at ``dst`` of the centred columns ``v`` (m, C)."""
        v = np.asarray(v, dtype=np.float64)
        if not self.exact:
            return _local(self.kriging, self.src, v, dst)
        alpha = self._kinv @ v
        return cross_apply(self.kriging, self.src, np.asarray(dst, dtype=np.float64), alpha, block)

    def loo(self, v: np.ndarray) -> np.ndarray:
        """(m, C) leave-one-out predictions at the spots: each from all the others."""
        v = np.asarray(v, dtype=np.float64)
        if not self.exact:
            return _local(self.kriging, self.src, v, None)
        if self._kinv_diag is None:
            self._kinv_diag = np.diag(self._kinv).copy()
        return v - (self._kinv @ v) / self._kinv_diag[:, None]


def cross_apply(kr: Kriging, src: np.ndarray, dst: np.ndarray, alpha: np.ndarray, block: int = 4096) -> np.ndarray:
    """(t, C) ``k(dst, src) @ alpha``: the signal covariances between targets and spots applied to
    ``alpha`` (m, C), block by block of ``block`` targets.

    The cross-covariances are the targets' weights, computed in float32 (the spots' own system stays
    float64) by torch, in place: distances directly (not through a matrix product, which loses
    precision) from coordinates centred on the spots, then the kernel (:func:`matern`'s formulas,
    in place), in one buffer per block. In the final maps of the Visium slide (11 058 targets x 2 702
    spots, one core) the base's kriging took 0.26-0.35 s this way against 0.65-0.70 s with numpy's
    separate passes (``cdist``, division, ``exp``, scaling, casts): ``benchmarks/results/final_maps_speed.md``.
    """
    import torch

    centre = src.mean(axis=0) if len(src) else np.zeros(2)
    s = torch.from_numpy(np.ascontiguousarray(src - centre, dtype=np.float32))
    a = torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32))
    out = np.empty((len(dst), alpha.shape[1]))
    # float32 even inside a caller's bfloat16 autocast (the engine's inference context)
    with torch.inference_mode(), torch.autocast("cpu", enabled=False):
        for i in range(0, len(dst), block):
            d = torch.from_numpy(np.ascontiguousarray(dst[i : i + block] - centre, dtype=np.float32))
            k = _matern_(torch.cdist(d, s, compute_mode="donot_use_mm_for_euclid_dist"), kr.ell, kr.nu)
            out[i : i + block] = (k.mul_(kr.snr) @ a).numpy()
    return out


def _matern_(d, ell: float, nu: float):
    """:func:`matern` of a torch tensor of distances, overwriting it (use the returned tensor)."""
    import torch

    if nu == 0.5:
        return d.mul_(-1.0 / ell).exp_()
    if nu == 1.5:
        d.mul_(math.sqrt(3.0) / ell)
        e = torch.exp(-d)
        return d.add_(1.0).mul_(e)
    if nu == 2.5:
        d.mul_(math.sqrt(5.0) / ell)
        e = torch.exp(-d)
        return d.mul(d).div_(3.0).add_(d).add_(1.0).mul_(e)
    raise ValueError(f"nu must be 0.5, 1.5 or 2.5, not {nu!r}")


def spd_inverse(k: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive-definite matrix (float64), symmetric to the last bit.

    From its Cholesky factor, by torch: a third of the time of numpy's LU inverse (0.31 s against
    0.91 s for a Visium slide's 2700 spots on one core), and torch releases the GIL while it computes
    (scipy's Cholesky routines hold it: a dock training in a thread froze the viewer ~0.2-0.5 s).
    ``K = snr k + I`` is well conditioned; should the factorisation still fail, numpy's inverse.
    """
    import torch

    t = torch.from_numpy(np.ascontiguousarray(k, dtype=np.float64))
    low, info = torch.linalg.cholesky_ex(t)
    if int(info) != 0:
        inv = np.linalg.inv(k)
    else:
        inv = torch.cholesky_inverse(low).numpy()
    return (inv + inv.T) * 0.5


#: Neighbour offsets are compared on a grid of 2**-30 pitch when weights are shared (below).
_QUANT = float(2**30)


def _local(kr: Kriging, src: np.ndarray, v: np.ndarray, dst: np.ndarray | None, chunk: int = 4096) -> np.ndarray:
    """Nearest-neighbour kriging for large slides: each target from its :data:`NEIGHBOURS` nearest
    spots (leave-one-out: from its nearest other spots).

    The weights depend only on where the neighbours sit relative to the target, and on a lattice
    most targets see the same few neighbourhoods (interior spots, the dense grid's sub-positions):
    each distinct neighbourhood (offsets on a grid of 2**-30 pitch, in a canonical order) is solved
    once. Cost: one small solve per distinct neighbourhood, not per target; memory: one chunk.
    """
    loo = dst is None
    dst = src if loo else np.asarray(dst, dtype=np.float64)
    n = min(NEIGHBOURS + int(loo), len(src))
    tree = cKDTree(src)
    out = np.empty((len(dst), v.shape[1]))
    solved: dict[bytes, np.ndarray] = {}
    for s in range(0, len(dst), chunk):
        _, idx = tree.query(dst[s : s + chunk], k=n)
        if loo:
            idx = idx[:, 1:]
        q = np.round((src[idx] - dst[s : s + chunk, None, :]) * _QUANT).astype(np.int64)  # (b, k, 2)
        order = np.lexsort((q[..., 1], q[..., 0]), axis=-1)  # canonical order of each neighbourhood
        idx = np.take_along_axis(idx, order, axis=1)
        q = np.take_along_axis(q, order[..., None], axis=1)
        keys, inv = _unique_rows(q.reshape(len(q), -1))
        todo = [i for i, key in enumerate(keys) if key.tobytes() not in solved]
        if todo:
            for i, w in zip(todo, _neighbour_weights(kr, keys[todo].reshape(len(todo), -1, 2) / _QUANT)):
                solved[keys[i].tobytes()] = w
        w = np.stack([solved[key.tobytes()] for key in keys])[inv]
        out[s : s + chunk] = np.einsum("bn,bnc->bc", w, v[idx])
    return out


#: Odd 64-bit multipliers of :func:`_unique_rows`' row hash (fixed: results never depend on them).
_HASH = np.random.default_rng(20261201).integers(1, 2**63, size=1024, dtype=np.uint64) | np.uint64(1)


def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of an int64 matrix and each row's index among them (as ``np.unique(rows,
    axis=0, return_inverse=True)``, in another order), ~50x faster on 96-column rows: rows are
    grouped by a 64-bit hash, and the grouping is checked against the rows themselves (a collision
    falls back to ``np.unique``)."""
    h = rows.view(np.uint64) if rows.dtype == np.int64 else rows.astype(np.uint64)
    mult = _HASH[: rows.shape[1]] if rows.shape[1] <= len(_HASH) else None
    if mult is not None:
        _, first, inv = np.unique((h * mult).sum(axis=1), return_index=True, return_inverse=True)
        keys = rows[first]
        if np.array_equal(keys[inv], rows):
            return keys, inv.reshape(-1)
    keys, inv = np.unique(rows, axis=0, return_inverse=True)
    return keys, inv.reshape(-1)


def _neighbour_weights(kr: Kriging, rel: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """(b, k) kriging weights of neighbourhoods given as offsets ``rel`` (b, k, 2) from their target."""
    k = rel.shape[1]
    eye = np.eye(k)
    out = np.empty(rel.shape[:2])
    for s in range(0, len(rel), chunk):
        p = rel[s : s + chunk]
        dd = np.sqrt(((p[:, :, None, :] - p[:, None, :, :]) ** 2).sum(-1))
        kss = kr.snr * matern(dd, kr.ell, kr.nu) + eye
        kts = kr.snr * matern(np.sqrt((p * p).sum(-1)), kr.ell, kr.nu)
        out[s : s + chunk] = np.linalg.solve(kss, kts[..., None])[..., 0]
    return out
