"""Spot-lattice geometry: lattice kind, physical proportions, grid <-> pixel affine, units.

All geometry lives here, once. Conventions (see the design notes in the README):

* Array coordinates are ``(row, col)`` integers. A lattice is **hex** when every spot has the same
  parity of ``row + col`` and columns take both parities (10x Visium, ST 2k arrays); otherwise it is
  **square** (legacy ST 1k arrays).
* Physical proportions in pitch units: square ``(y, x) = (row, col)``; hex
  ``(y, x) = (row * sqrt(3)/2, col / 2)``.
* Pixel positions are full-resolution image pixels ``(x, y)`` as in ``obsm['spatial']``.
* World coordinates (napari) are ``(y, x)`` in micrometres when the scale is known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

SQRT3_2 = float(np.sqrt(3.0) / 2.0)

#: Centre-to-centre spot pitch of known technologies, in micrometres.
PITCH_UM = {"visium": 100.0, "st_1k": 200.0, "st_2k": 200.0}

#: How far (in pitch units) a spot may sit from the fitted lattice and still be snapped to it.
SNAP_TOLERANCE = 0.35


def detect_kind(rows: np.ndarray, cols: np.ndarray) -> str:
    """Lattice kind from array coordinates: ``"hex"`` or ``"square"``.

    Hex when every spot has the same parity of ``row + col`` and the columns take both parities.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if rows.size == 0:
        return "square"
    parity = (rows + cols) % 2
    if np.all(parity == parity[0]) and np.unique(cols % 2).size == 2:
        return "hex"
    return "square"


def physical(rows: np.ndarray, cols: np.ndarray, kind: str) -> np.ndarray:
    """Physical ``(y, x)`` positions in pitch units (n, 2) for array coordinates."""
    rows = np.asarray(rows, dtype=np.float64)
    cols = np.asarray(cols, dtype=np.float64)
    if kind == "hex":
        return np.stack([rows * SQRT3_2, cols / 2.0], axis=1)
    return np.stack([rows, cols], axis=1)


#: Array-coordinate shifts of the four cosets of the measured sub-lattice (phase 0 is the benchmark's).
PHASE_SHIFTS = {"square": ((0, 0), (0, 1), (1, 0), (1, 1)), "hex": ((0, 0), (0, 2), (1, 1), (1, 3))}


def measured_mask(rows: np.ndarray, cols: np.ndarray, kind: str, phase: int = 0) -> np.ndarray:
    """The benchmark's measured sub-lattice (1/4 of the spots), in absolute array coordinates.

    Square: row and col both even. Hex: row even and ``(row + col) % 4 == 0``, the hex sub-lattice of
    double pitch, so that each level is the previous one scaled by two. ``phase`` 1-3: one of the
    other three cosets of that sub-lattice (the same geometry, other spots measured).
    """
    shifts = PHASE_SHIFTS["hex" if kind == "hex" else "square"]
    if not 0 <= int(phase) < len(shifts):
        raise ValueError(f"phase must be 0, 1, 2 or 3, not {phase!r}")
    dr, dc = shifts[int(phase)]
    rows = np.asarray(rows, dtype=np.int64) - dr
    cols = np.asarray(cols, dtype=np.int64) - dc
    if kind == "hex":
        return (rows % 2 == 0) & ((rows + cols) % 4 == 0)
    return (rows % 2 == 0) & (cols % 2 == 0)


def fit_affine(rows: np.ndarray, cols: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Least-squares affine (2, 3) mapping ``[row, col, 1]`` to pixel ``[x, y]``."""
    design = np.stack([rows, cols, np.ones_like(rows)], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, np.asarray(xy, dtype=np.float64), rcond=None)
    return coef.T  # (2, 3)


def apply_affine(affine: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) ``[row, col, 1] -> [x, y]`` affine; returns (n, 2) ``(x, y)``."""
    rows = np.asarray(rows, dtype=np.float64)
    cols = np.asarray(cols, dtype=np.float64)
    return (affine[:, :2] @ np.stack([rows, cols])).T + affine[:, 2]


def pitch_of_affine(affine: np.ndarray, kind: str) -> float:
    """Centre-to-centre distance between neighbouring spots of a row, in pixels."""
    col_step = 2.0 if kind == "hex" else 1.0
    return float(np.hypot(*(affine[:, 1] * col_step)))


def guess_technology(kind: str, affine: np.ndarray | None, rows: np.ndarray, cols: np.ndarray) -> str | None:
    """Best guess of the array technology from geometry alone (never from free text).

    Square lattices are legacy ST 1k arrays. Hex lattices whose rows sit sqrt(3)/2 pitch apart
    (regular hex) within the Visium array extent are Visium; hex lattices with another row spacing
    are ST 2k arrays. Without pixel positions the row spacing is unknown and ``None`` is returned.
    """
    if affine is None:
        return None
    if kind == "square":
        return "st_1k"
    row_step = float(np.hypot(*affine[:, 0]))
    pitch = pitch_of_affine(affine, kind)
    ratio = row_step / pitch
    regular = abs(ratio - SQRT3_2) < 0.08
    if regular and rows.max() < 78 and cols.max() < 128:
        return "visium"
    return "st_2k" if not regular else None


@dataclass(frozen=True)
class Geometry:
    """Where the lattice sits: kind, grid -> pixel affine, pitch and units.

    Attributes
    ----------
    kind
        ``"hex"`` or ``"square"``.
    grid_to_px
        (2, 3) affine from ``[row, col, 1]`` to full-resolution pixel ``[x, y]``, or ``None`` when the
        slide has no pixel positions.
    residual_pitch
        Largest distance (pitch units) of a spot from the fitted affine; a few tenths is normal for
        legacy ST arrays.
    technology
        ``"visium"``, ``"st_1k"``, ``"st_2k"`` or ``None`` when unknown.
    pitch_um
        Centre-to-centre pitch in micrometres, or ``None`` when unknown.
    """

    kind: str
    grid_to_px: np.ndarray | None
    residual_pitch: float
    technology: str | None
    pitch_um: float | None

    @property
    def pitch_px(self) -> float | None:
        """Centre-to-centre pitch in full-resolution pixels, or ``None``."""
        if self.grid_to_px is None:
            return None
        return pitch_of_affine(self.grid_to_px, self.kind)

    @property
    def um_per_px(self) -> float | None:
        """Micrometres per full-resolution pixel, or ``None`` when unknown."""
        if self.pitch_px is None or self.pitch_um is None:
            return None
        return self.pitch_um / self.pitch_px

    @property
    def units(self) -> str:
        """Unit of world coordinates: ``"um"`` when known, else ``"pixel"`` or ``"pitch"``."""
        if self.pitch_um is not None:
            return "um"
        return "pixel" if self.grid_to_px is not None else "pitch"

    def grid_to_world(self) -> np.ndarray:
        """3x3 affine from ``(row, col, 1)`` to napari world ``(y, x, 1)`` in :attr:`units`."""
        out = np.eye(3)
        if self.grid_to_px is not None:
            scale = self.um_per_px if self.pitch_um is not None else 1.0
            a = self.grid_to_px
            out[0, :] = a[1] * scale  # y row of the affine
            out[1, :] = a[0] * scale  # x row of the affine
            return out
        scale = self.pitch_um if self.pitch_um is not None else 1.0
        if self.kind == "hex":
            out[0, 0] = SQRT3_2 * scale
            out[1, 1] = 0.5 * scale
        else:
            out[0, 0] = scale
            out[1, 1] = scale
        return out

    def px_to_world_scale(self) -> float:
        """World units per full-resolution pixel (1 when the micrometre scale is unknown)."""
        um = self.um_per_px
        return 1.0 if um is None else um


def build_geometry(
    rows: np.ndarray,
    cols: np.ndarray,
    xy: np.ndarray | None,
    pitch_um: float | None = None,
) -> Geometry:
    """Fit the geometry of a slide from its array coordinates and optional pixel positions.

    Parameters
    ----------
    rows, cols
        Integer array coordinates of the spots.
    xy
        (n, 2) full-resolution pixel ``(x, y)``; rows with NaN are ignored. ``None`` when unknown.
    pitch_um
        Override the centre-to-centre pitch in micrometres (else guessed from the technology).

    Raises
    ------
    ValueError
        When pixel positions do not follow the array coordinates (spots off the fitted lattice by
        more than half a pitch).
    """
    kind = detect_kind(rows, cols)
    affine = None
    residual = 0.0
    if xy is not None:
        xy = np.asarray(xy, dtype=np.float64)
        ok = np.all(np.isfinite(xy), axis=1)
        if ok.sum() >= 3 and np.unique(rows[ok]).size > 1 and np.unique(cols[ok]).size > 1:
            affine = fit_affine(rows[ok], cols[ok], xy[ok])
            pitch = pitch_of_affine(affine, kind)
            dist = np.hypot(*(apply_affine(affine, rows[ok], cols[ok]) - xy[ok]).T)
            residual = float(dist.max() / pitch) if pitch > 0 else np.inf
            if not np.isfinite(residual) or residual > 0.5:
                raise ValueError(
                    f"pixel positions do not follow the array coordinates (a spot lies "
                    f"{residual:.2f} pitch off the fitted lattice)"
                )
    tech = guess_technology(kind, affine, np.asarray(rows), np.asarray(cols))
    if pitch_um is None and tech is not None and affine is not None:
        pitch_um = PITCH_UM[tech]
    return Geometry(kind=kind, grid_to_px=affine, residual_pitch=residual, technology=tech, pitch_um=pitch_um)


def recover_grid(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recover integer array coordinates ``(row, col)`` from pixel positions alone.

    Finds the lattice's basis from nearest-neighbour vectors (square or hex), snaps every spot to it
    and raises ``ValueError`` when the positions are not on any lattice (e.g. Slide-seq beads).
    Hex lattices come back in the Visium convention: rows along the second basis vector, neighbours
    within a row two columns apart, ``row + col`` even.
    """
    xy = np.asarray(xy, dtype=np.float64)
    if xy.shape[0] < 4:
        raise ValueError("too few spots to recover a lattice from pixel positions")
    tree = cKDTree(xy)
    dist, idx = tree.query(xy, k=min(7, xy.shape[0]))
    nn = float(np.median(dist[:, 1]))
    if not nn > 0:
        raise ValueError("spots share identical pixel positions; no lattice can be recovered")
    vecs = []
    for k in range(1, dist.shape[1]):
        close = dist[:, k] < 1.25 * nn
        vecs.append(xy[idx[close, k]] - xy[close])
    v = np.concatenate(vecs)
    # fold to the half plane (angle in [0, pi))
    v = np.where((np.arctan2(v[:, 1], v[:, 0]) < 0)[:, None], -v, v)
    ang = np.mod(np.arctan2(v[:, 1], v[:, 0]), np.pi)
    hist, edges = np.histogram(ang, bins=180, range=(0, np.pi))
    # dominant direction, smoothed over neighbouring bins (circularly)
    smooth = hist + np.roll(hist, 1) + np.roll(hist, -1)
    theta1 = edges[int(np.argmax(smooth))] + np.pi / 360

    def cluster(theta: float) -> np.ndarray:
        d = np.mod(ang - theta, np.pi)
        d = np.minimum(d, np.pi - d)
        sel = d < np.deg2rad(12)
        return v[sel]

    c1 = cluster(theta1)
    c60 = cluster(theta1 + np.pi / 3)
    c90 = cluster(theta1 + np.pi / 2)
    is_hex = len(c60) > len(c90)
    b1 = _mean_direction(c1)
    b2 = _mean_direction(c60 if is_hex else c90)
    if b1 is None or b2 is None:
        raise ValueError("pixel positions are not on a square or hex lattice")
    if b1 @ b2 < 0:  # hex: b2 must be 60 degrees from b1 (next row, one column over), not 120
        b2 = -b2
    basis = np.stack([b1, b2], axis=1)  # columns are basis vectors
    origin = xy[0]
    coef = np.linalg.solve(basis, (xy - origin).T).T
    snapped = np.round(coef)
    # refine: fit a least-squares affine on the snapped coordinates, re-snap through its inverse,
    # until the snapping is stable (single-origin snapping drifts on slides whose spots deviate)
    for _ in range(10):
        aff = fit_affine(snapped[:, 0], snapped[:, 1], xy)
        inv = np.linalg.inv(aff[:, :2])
        again = np.round((inv @ (xy - aff[:, 2]).T).T)
        if np.array_equal(again, snapped):
            break
        snapped = again
    resid = np.hypot(*(apply_affine(aff, snapped[:, 0], snapped[:, 1]) - xy).T)
    pitch = float(np.hypot(*aff[:, 0]))
    if not np.all(resid < SNAP_TOLERANCE * pitch):
        frac = float(np.mean(resid >= SNAP_TOLERANCE * pitch))
        raise ValueError(
            f"coordinates are not on a square or hex spot lattice ({frac:.0%} of spots lie more "
            f"than {SNAP_TOLERANCE} pitch from the best-fitting lattice)"
        )
    a = snapped[:, 0].astype(np.int64)
    b = snapped[:, 1].astype(np.int64)
    a -= a.min()
    b -= b.min()
    if is_hex:
        # along b1: same row, two columns apart; along b2: next row, one column over
        row = b
        col = 2 * a + b
        col -= col.min()
        if ((row + col) % 2 != 0).any():
            col += 1
        return row, col
    return b, a


def _mean_direction(vs: np.ndarray) -> np.ndarray | None:
    if len(vs) == 0:
        return None
    ref = vs[0]
    signs = np.sign(vs @ ref)
    signs[signs == 0] = 1
    return (vs * signs[:, None]).mean(axis=0)


def dense_positions(rows: np.ndarray, cols: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Dense-grid ``(R, C)`` near the measured spots, sorted by row then column (no duplicates).

    The x2 dense grid of imputation: a measured spot ``(row, col)`` sits at ``(2 row, 2 col)``, and the
    grid holds every dense node one dense step from a measured spot: on square lattices the spot's 3x3
    block (the midpoints to its four neighbours and the centres of its four cells), on hex lattices the
    nodes ``(R, C)`` with ``R + C`` even within one dense pitch (the spot and its six neighbours). So the
    imputed area reaches half a measured pitch beyond the outermost spots on every side alike.
    """
    r2 = 2 * np.asarray(rows, dtype=np.int64)
    c2 = 2 * np.asarray(cols, dtype=np.int64)
    if kind == "hex":
        offs = [(0, 0), (0, 2), (0, -2), (1, 1), (1, -1), (-1, 1), (-1, -1)]
    else:
        offs = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)]
    rr = np.concatenate([r2 + a for a, _ in offs])
    cc = np.concatenate([c2 + b for _, b in offs])
    pos = np.unique(np.stack([rr, cc], 1), axis=0)
    return pos[:, 0], pos[:, 1]
