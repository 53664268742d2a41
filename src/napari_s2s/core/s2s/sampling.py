"""Lattice images, the "keep 1/4" masks, lattice-keeping augmentation and the network's input channels.

Geometry (see ``data/lattice.py`` and the design notes)
--------------------------------------------------
Every level of S2S is a lattice image on the raw array grid: a square lattice uses every pixel; a hex
lattice is the raw checkerboard (nodes where ``row + col`` has the lattice's parity), physical
position ``(row * sqrt(3)/2, col / 2)``. The next sparser level keeps 1/4 of the nodes, a sub-lattice of
double pitch (square: row and col even; hex: row even and ``(row + col) % 4 == 0``, relative to an
origin node). Each level is the previous one scaled by two, so one function serves both steps:

* training, sparser -> sparse: the measured spots laid out on their own lattice, keep 1/4, predict all;
* inference, sparse -> dense: the measured spots placed at ``(2 row, 2 col)`` of the x2 grid (which is
  exactly the kept sub-lattice of the dense lattice), predict all dense nodes.

The sub-lattice has four cosets ("phases"); training uses all four, which quadruples the training pairs
without ever touching a position that was not measured.

Why the raw checkerboard for hex
--------------------------------
On the raw grid the six hex neighbours of a node sit at ``(0, +-2)`` and ``(+-1, +-1)``. A 3x3
convolution sees the four diagonal ones directly and reaches the other two after one more layer; hole
pixels carry a node-mask channel and the smoothers' interpolated values, so the network is told which
pixels are real. The raw grid is anisotropic (a pixel is ``sqrt(3)/2`` pitch tall and ``1/2`` pitch wide),
but the same anisotropy holds at every level, so what the network learns at the sparser level is
exactly what it meets at the dense level. Lattice-keeping augmentation on it is the four flips (a 90
degree rotation does not map a hex lattice onto itself in these coordinates); square lattices use all
eight symmetries of the square.

Leak-freedom: training images are built from the measured values only; hidden positions simply do not
exist at the sparse level, and augmentation is applied to those images after they are built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..data.lattice import SQRT3_2

#: Smoother bandwidths in pitches of the output level (kept samples are 2 pitches apart).
DEFAULT_SIGMAS = (1.0, 2.0, 4.0)


@dataclass
class LatticeImage:
    """Values laid out on a lattice image (one level).

    Attributes
    ----------
    values
        (G, H, W) float32, 0 where there is no value.
    present
        (H, W) bool: positions holding a value.
    nodes
        (H, W) bool: positions that exist on the lattice (all for square, a checkerboard for hex).
    origin
        ``(row, col)`` of pixel ``(0, 0)`` in the level's coordinates.
    kind
        ``"hex"`` or ``"square"``.
    """

    values: np.ndarray
    present: np.ndarray
    nodes: np.ndarray
    origin: tuple[int, int]
    kind: str

    @property
    def shape(self) -> tuple[int, int]:
        return self.present.shape


def node_mask(shape: tuple[int, int], origin: tuple[int, int], kind: str, parity: int = 0) -> np.ndarray:
    """(H, W) lattice nodes: all pixels (square) or ``(row + col) % 2 == parity`` (hex)."""
    h, w = shape
    if kind != "hex":
        return np.ones((h, w), dtype=bool)
    rr, cc = np.mgrid[0:h, 0:w]
    return (rr + origin[0] + cc + origin[1]) % 2 == parity


def lattice_image(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, kind: str, pad: int = 0, min_shape: int = 0
) -> LatticeImage:
    """Lay values ``(n, G)`` at integer ``(rows, cols)`` out on a lattice image.

    Parameters
    ----------
    pad
        Empty border added on every side.
    min_shape
        Grow the image (at the bottom/right) to at least this size in both dimensions.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 1:
        values = values[:, None]
    r0 = int(rows.min()) - pad
    c0 = int(cols.min()) - pad
    if kind == "hex" and (r0 + c0) % 2:  # keep node parity fixed relative to the image origin
        c0 -= 1
    h = max(int(rows.max()) - r0 + 1 + pad, min_shape)
    w = max(int(cols.max()) - c0 + 1 + pad, min_shape)
    img = np.zeros((values.shape[1], h, w), dtype=np.float32)
    img[:, rows - r0, cols - c0] = values.T
    present = np.zeros((h, w), dtype=bool)
    present[rows - r0, cols - c0] = True
    parity = int((rows[0] + cols[0]) % 2) if kind == "hex" else 0
    return LatticeImage(img, present, node_mask((h, w), (r0, c0), kind, parity), (r0, c0), kind)


def phase_origins(kind: str, parity: int = 0) -> list[tuple[int, int]]:
    """The four cosets of the keep-1/4 sub-lattice, as origin nodes ``(row, col)``."""
    if kind == "hex":
        return [(0, parity), (0, parity + 2), (1, parity + 1), (1, parity + 3)]
    return [(0, 0), (0, 1), (1, 0), (1, 1)]


def keep_quarter(rows: np.ndarray, cols: np.ndarray, kind: str, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Keep-1/4 mask: the double-pitch sub-lattice through ``origin`` (a lattice node).

    Square: ``(row - r0)`` and ``(col - c0)`` even. Hex: ``(row - r0)`` even and
    ``((row - r0) + (col - c0)) % 4 == 0``. With ``origin=(0, 0)`` this is
    :func:`napari_s2s.core.data.lattice.measured_mask`.
    """
    dr = np.asarray(rows, dtype=np.int64) - origin[0]
    dc = np.asarray(cols, dtype=np.int64) - origin[1]
    if kind == "hex":
        return (dr % 2 == 0) & ((dr + dc) % 4 == 0)
    return (dr % 2 == 0) & (dc % 2 == 0)


def keep_quarter_image(img: LatticeImage, phase: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: present positions on the sub-lattice of ``phase`` (absolute level coordinates)."""
    h, w = img.shape
    rr, cc = np.mgrid[0:h, 0:w]
    m = keep_quarter(rr + img.origin[0], cc + img.origin[1], img.kind, phase)
    return m & img.present


# ---------------------------------------------------------------------- augmentation
def symmetries(kind: str) -> list[tuple[int, bool, bool]]:
    """Lattice-keeping transforms ``(k_rot90, flip_rows, flip_cols)``: 8 (square) or 4 flips (hex)."""
    flips = [(0, a, b) for a in (False, True) for b in (False, True)]
    if kind == "hex":
        return flips
    return flips + [(1, a, b) for a in (False, True) for b in (False, True)]


def apply_symmetry(arr: np.ndarray, sym: tuple[int, bool, bool]) -> np.ndarray:
    """Apply a transform from :func:`symmetries` to the last two axes of ``arr``."""
    k, fr, fc = sym
    out = arr
    if k:
        out = np.rot90(out, k, axes=(-2, -1))
    if fr:
        out = out[..., ::-1, :]
    if fc:
        out = out[..., :, ::-1]
    return np.ascontiguousarray(out)


# ---------------------------------------------------------------------- input channels
def _sigma_px(kind: str, sigma: float) -> tuple[float, float]:
    """Gaussian sigma in pixels ``(rows, cols)`` for a bandwidth in pitches of the level."""
    if kind == "hex":
        return (sigma / SQRT3_2, sigma * 2.0)
    return (sigma, sigma)


#: Candidate bandwidths (pitches of the level) for the leave-one-out choice.
LOO_GRID = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def _center_weight(sp_: tuple[float, float]) -> float:
    """Weight of a pixel on itself in ``ndimage.gaussian_filter`` (truncate 3)."""
    w = 1.0
    for s in sp_:
        r = int(3.0 * s + 0.5)
        k = np.exp(-0.5 * (np.arange(-r, r + 1) / s) ** 2)
        w *= float(k[r] / k.sum())
    return w


def loo_bandwidth(values: np.ndarray, kept: np.ndarray, kind: str, grid=LOO_GRID, shared: bool = True) -> np.ndarray:
    """Bandwidth (pitches of the level) minimising the leave-one-out error on the kept samples.

    Each kept sample is predicted by the Gaussian-weighted mean of the *other* kept samples (closed
    form from the normalised convolution: subtract the sample's own weight). ``shared``: one
    bandwidth for all genes (errors of standardised genes summed; per-gene choices were measured to
    be too noisy on small slides), returned once per gene.
    """
    g = values.shape[0]
    m = kept.astype(np.float32)
    err = np.full((g, len(grid)), np.inf)
    for j, sigma in enumerate(grid):
        sp_ = _sigma_px(kind, sigma)
        w0 = _center_weight(sp_)
        den = ndimage.gaussian_filter(m, sp_, mode="constant", truncate=3.0)[kept] - w0
        ok = den > 1e-3 * w0
        if ok.sum() < 3:
            continue
        for i in range(g):
            v = values[i][kept]
            num = ndimage.gaussian_filter(values[i] * m, sp_, mode="constant", truncate=3.0)[kept] - w0 * v
            err[i, j] = float(np.mean((v[ok] - num[ok] / den[ok]) ** 2))
    if shared:
        var = np.maximum(values[:, kept].var(axis=1), 1e-12)[:, None]
        tot = np.where(np.isfinite(err), err / var, np.nan)
        ok = np.isfinite(err).all(axis=0)
        j = int(np.argmin(np.where(ok, np.nansum(tot, axis=0), np.inf))) if ok.any() else len(grid) // 2
        return np.full(g, float(grid[j]))
    best = np.argmin(err, axis=1)
    best[~np.isfinite(err.min(axis=1))] = len(grid) // 2
    return np.asarray(grid, dtype=np.float64)[best]


def level_bandwidth(reference: np.ndarray | None, kept: np.ndarray, kind: str) -> float | None:
    """The leave-one-out bandwidth (:func:`loo_bandwidth`, shared) of ``reference`` (N, H, W) genes
    at the ``kept`` samples; ``None`` without a reference."""
    if reference is None or len(reference) == 0:
        return None
    return float(loo_bandwidth(reference, kept, kind)[0])


def smooth_kept(
    values: np.ndarray,
    kept: np.ndarray,
    kind: str,
    sigmas=DEFAULT_SIGMAS,
    adaptive: bool = False,
    bandwidth: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised-convolution smoothers of the kept samples, one per bandwidth.

    Parameters
    ----------
    values
        (G, H, W) values (only kept positions are read).
    kept
        (H, W) bool.
    sigmas
        Bandwidths in pitches of the level; with ``adaptive`` they are factors applied to each gene's
        leave-one-out bandwidth (:func:`loo_bandwidth`), so that the channels mean the same thing at
        the sparser and the dense level whatever the spatial scale of the gene.

    Returns
    -------
    (G, S, H, W) float32 Gaussian-weighted means of the kept samples (physical distances), and
    (S, H, W) the kept density per bandwidth (divided by its maximum; gene-independent, taken at the
    nominal bandwidths).
    """
    g, h, w = values.shape
    m = kept.astype(np.float32)
    out = np.zeros((g, len(sigmas), h, w), dtype=np.float32)
    dens = np.zeros((len(sigmas), h, w), dtype=np.float32)
    if not adaptive:
        base = np.ones(g)
    elif bandwidth is None:
        base = loo_bandwidth(values, kept, kind)
    else:
        base = np.full(g, float(bandwidth))
    cache: dict = {}

    def den_of(sigma: float) -> np.ndarray:
        key = round(float(sigma), 6)
        if key not in cache:
            cache[key] = ndimage.gaussian_filter(m, _sigma_px(kind, sigma), mode="constant", truncate=3.0)
        return cache[key]

    for s, sigma in enumerate(sigmas):
        den = den_of(sigma * (2.0 if adaptive else 1.0))
        dens[s] = den / max(float(den.max()), 1e-6)
        for i in range(g):
            sg = sigma * base[i]
            den = den_of(sg)
            ref = max(float(den.max()), 1e-6)
            num = ndimage.gaussian_filter(values[i] * m, _sigma_px(kind, sg), mode="constant", truncate=3.0)
            out[i, s] = num / np.maximum(den, 1e-3 * ref)
    return out, dens


def n_input_channels(n_sigmas: int, cross_gene: bool, n_covariates: int = 0, prior: bool = False) -> int:
    """Channels of :func:`make_channels`: kept values, mask, nodes, smoothers (+ cross-gene), densities,
    (the prior), covariates."""
    return 3 + n_sigmas * (2 if cross_gene else 1) + n_sigmas + int(prior) + n_covariates


def make_channels(
    values: np.ndarray,
    kept: np.ndarray,
    nodes: np.ndarray,
    kind: str,
    recon: np.ndarray | None = None,
    cross_gene: bool = False,
    sigmas=DEFAULT_SIGMAS,
    covariates: np.ndarray | None = None,
    adaptive: bool = False,
    use_prior: bool = False,
    prior: np.ndarray | None = None,
    bandwidth: float | None = None,
    recon_bandwidth: float | None = None,
) -> np.ndarray:
    """Network input for every gene: (G, Cin, H, W) float32.

    Channels: kept values (0 elsewhere), kept mask, lattice nodes, the gene's smoothers (one per
    bandwidth), with ``cross_gene`` the smoothers of its cross-gene (PCA) reconstruction ``recon``
    (or of the gene itself when ``recon`` is ``None``, e.g. natural images), the kept densities, with
    ``use_prior`` the prior (G, H, W): the base predictor's prediction from the kept samples, or the
    middle smoother when ``prior`` is ``None`` (natural images have no base predictor), then optional
    per-position covariates (K, H, W) shared by all genes. ``adaptive``: bandwidths are factors of
    each gene's leave-one-out bandwidth, or of ``bandwidth`` (see :func:`smooth_kept`); the cross-gene
    smoothers' of ``recon_bandwidth`` when given.
    """
    g = values.shape[0]
    km = kept.astype(np.float32)
    sm, dens = smooth_kept(values, kept, kind, sigmas, adaptive, bandwidth)
    parts = [
        (values * km)[:, None],
        np.broadcast_to(km, (g, 1) + km.shape),
        np.broadcast_to(nodes.astype(np.float32), (g, 1) + km.shape),
        sm,
    ]
    if cross_gene:
        if recon is None:
            parts.append(sm)
        else:
            rbw = bandwidth if recon_bandwidth is None else recon_bandwidth
            parts.append(smooth_kept(recon, kept, kind, sigmas, adaptive, rbw)[0])
    parts.append(np.broadcast_to(dens, (g,) + dens.shape))
    if use_prior:
        parts.append(sm[:, len(sm[0]) // 2][:, None] if prior is None else np.asarray(prior, np.float32)[:, None])
    if covariates is not None:
        parts.append(np.broadcast_to(covariates.astype(np.float32), (g,) + covariates.shape))
    return np.concatenate(parts, axis=1).astype(np.float32)


def channel_index(name: str, n_sigmas: int, cross_gene: bool) -> int:
    """Index of a named channel of :func:`make_channels` (``"kept"``, ``"mask"``, ``"nodes"``,
    ``"smooth"`` (middle bandwidth), ``"pca"`` (middle cross-gene smoother), ``"prior"`` (the base
    predictor's prediction, when the channels have one))."""
    mid = n_sigmas // 2
    if name == "kept":
        return 0
    if name == "mask":
        return 1
    if name == "nodes":
        return 2
    if name == "smooth":
        return 3 + mid
    if name == "pca":
        return 3 + n_sigmas + mid if cross_gene else 3 + mid
    if name == "prior":
        return n_input_channels(n_sigmas, cross_gene)
    raise ValueError(f"unknown channel {name!r}")


def window_starts(weight: np.ndarray, size: int, min_frac: float = 0.5) -> np.ndarray:
    """Top-left corners ``(k, 2)`` of ``size x size`` windows with enough weight.

    A window qualifies when its count of ``weight`` reaches ``min_frac`` of the best window's (so
    that slides smaller or sparser than a window still yield windows).
    """
    h, w = weight.shape
    if h < size or w < size:
        raise ValueError("image smaller than the window; pad it first")
    ii = np.pad(np.cumsum(np.cumsum(weight.astype(np.float64), 0), 1), ((1, 0), (1, 0)))
    s = ii[size:, size:] - ii[:-size, size:] - ii[size:, :-size] + ii[:-size, :-size]
    best = s.max()
    if best <= 0:
        return np.zeros((0, 2), dtype=np.int64)
    return np.argwhere(s >= min_frac * best).astype(np.int64)
