"""Lattice geometry: kind detection, physical proportions, sub-lattices, affine fit, grid recovery."""

from __future__ import annotations

import numpy as np
import pytest

from napari_s2s.core.data.lattice import (
    SQRT3_2,
    build_geometry,
    detect_kind,
    measured_mask,
    physical,
    recover_grid,
)


def hex_coords(n_rows=10, n_cols=20):
    rr, cc = np.mgrid[0:n_rows, 0:n_cols]
    keep = (rr + cc) % 2 == 0
    return rr[keep], cc[keep]


def test_detect_kind():
    r, c = hex_coords()
    assert detect_kind(r, c) == "hex"
    rr, cc = np.mgrid[0:5, 0:6]
    assert detect_kind(rr.ravel(), cc.ravel()) == "square"
    # a square lattice subsampled on even positions is still square (columns of one parity)
    assert detect_kind(rr.ravel() * 2, cc.ravel() * 2) == "square"


def test_hex_physical_neighbours_are_one_pitch_apart():
    r, c = hex_coords()
    p = physical(r, c, "hex")
    d = np.hypot(*(p[:, None, :] - p[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    assert np.allclose(d.min(axis=1), 1.0)
    assert physical([2], [4], "hex") == pytest.approx(np.array([[2 * SQRT3_2, 2.0]]))


@pytest.mark.parametrize("kind", ["square", "hex"])
def test_measured_sublattice_is_a_quarter_and_scaled_by_two(kind):
    if kind == "hex":
        r, c = hex_coords(40, 80)
    else:
        rr, cc = np.mgrid[0:40, 0:40]
        r, c = rr.ravel(), cc.ravel()
    m = measured_mask(r, c, kind)
    assert m.mean() == pytest.approx(0.25, abs=0.01)
    # the measured spots form the same lattice at double pitch: nearest neighbour distance 2
    p = physical(r[m], c[m], kind)
    d = np.hypot(*(p[:, None, :] - p[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    assert np.allclose(d.min(axis=1), 2.0)
    if kind == "hex":  # and it is hex again (same parity of (row/2 + col/2))
        assert detect_kind(r[m] // 2, c[m] // 2) == "hex"


def test_geometry_affine_and_units():
    r, c = hex_coords()
    # Visium-like: 137.6 px pitch, rows sqrt(3)/2 pitch apart, an offset
    pitch = 137.6
    xy = np.stack([c * pitch / 2 + 100.0, r * pitch * SQRT3_2 + 50.0], axis=1)
    g = build_geometry(r, c, xy)
    assert g.technology == "visium" and g.pitch_um == 100.0
    assert g.pitch_px == pytest.approx(pitch)
    assert g.um_per_px == pytest.approx(100.0 / pitch)
    world = g.grid_to_world() @ np.stack([r, c, np.ones_like(r)]).astype(float)
    assert np.allclose(world[0], xy[:, 1] * g.um_per_px)
    assert np.allclose(world[1], xy[:, 0] * g.um_per_px)


def test_geometry_rejects_pixels_that_do_not_follow_the_grid():
    r, c = hex_coords()
    xy = np.random.default_rng(0).uniform(0, 1000, size=(r.size, 2))
    with pytest.raises(ValueError, match="do not follow"):
        build_geometry(r, c, xy)


@pytest.mark.parametrize("kind", ["square", "hex"])
def test_recover_grid_with_jitter_and_rotation(kind):
    rng = np.random.default_rng(1)
    if kind == "hex":
        r, c = hex_coords(12, 24)
    else:
        rr, cc = np.mgrid[0:12, 0:12]
        r, c = rr.ravel(), cc.ravel()
    p = physical(r, c, kind) * 100.0
    th = np.deg2rad(7)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    xy = p[:, ::-1] @ rot.T + rng.normal(scale=8.0, size=p.shape)  # 0.08 pitch jitter
    r2, c2 = recover_grid(xy)
    assert detect_kind(r2, c2) == kind
    # neighbour structure preserved
    p2 = physical(r2, c2, kind)
    for i in range(0, r.size, 7):
        d1 = np.hypot(*(p - p[i]).T) / 100.0
        d2 = np.hypot(*(p2 - p2[i]).T)
        assert set(np.flatnonzero(np.isclose(d1, 1))) == set(np.flatnonzero(np.isclose(d2, 1)))


def test_recover_grid_refuses_random_beads():
    xy = np.random.default_rng(2).uniform(0, 3000, size=(500, 2))
    with pytest.raises(ValueError, match="not on a square or hex"):
        recover_grid(xy)
