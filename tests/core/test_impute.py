"""Dense x2 positions, sliding-window inference, final data consistency."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_s2s.core.impute import dense_positions, final_consistency, predict_image
from napari_s2s.core.model import CDCIN, NetSpec


def test_square_dense_positions_are_the_2x2_blocks():
    rows = np.array([0, 0, 1, 5])
    cols = np.array([0, 1, 0, 7])
    R, C = dense_positions(rows, cols, "square")
    want = {(2 * r + a, 2 * c + b) for r, c in zip(rows, cols) for a in (0, 1) for b in (0, 1)}
    assert set(zip(R.tolist(), C.tolist())) == want
    assert len(R) == 4 * len(rows)


def test_hex_dense_positions_are_lattice_nodes_around_each_spot():
    rows = np.array([0, 0, 1, 4])
    cols = np.array([0, 2, 1, 6])  # row + col even
    R, C = dense_positions(rows, cols, "hex")
    assert np.all((R + C) % 2 == 0)
    got = set(zip(R.tolist(), C.tolist()))
    for r, c in zip(rows, cols):
        assert (2 * r, 2 * c) in got
        for d in [(0, 2), (0, -2), (1, 1), (1, -1), (-1, 1), (-1, -1)]:  # the six hex neighbours
            assert (2 * r + d[0], 2 * c + d[1]) in got
    assert len(got) == len(R)  # no duplicates


def test_final_consistency_is_exact():
    rows, cols = np.array([0, 1]), np.array([0, 1])
    vals = np.array([[0.123456789, 1.0], [2.5, np.float32(1 / 3)]], np.float32)
    tr, tc = np.array([0, 1, 2, 0]), np.array([1, 0, 2, 0])
    pred = np.full((4, 2), 9.0, np.float32)
    out, measured = final_consistency(pred, tr, tc, rows, cols, vals)
    assert measured.tolist() == [False, False, True, True]
    assert np.array_equal(out[2], vals[1]) and np.array_equal(out[3], vals[0])
    assert np.all(out[:2] == 9.0)


@pytest.mark.parametrize("shape", [(20, 30), (70, 90)])
def test_tiled_prediction_matches_whole_image_for_a_local_model(shape):
    # a network without attention and few layers is local: overlapping tiles average to the same values
    # away from tile borders; with a pointwise model (no spatial context) they agree everywhere
    torch.manual_seed(0)
    spec = NetSpec(in_channels=3, cascades=1, features=4, blocks=1, layers=1, growth=4, attention=False)
    net = CDCIN(spec)
    with torch.no_grad():
        net.nets[0].out.weight.normal_()
    for mod in net.modules():
        if isinstance(mod, torch.nn.Conv2d) and mod.kernel_size == (3, 3):
            with torch.no_grad():
                centre = mod.weight[:, :, 1, 1].clone()
                mod.weight.zero_()
                mod.weight[:, :, 1, 1] = centre
    ch = np.random.default_rng(0).normal(size=(2, 3) + shape).astype(np.float32)
    whole = predict_image(net, ch, torch.device("cpu"), tile=max(shape))
    tiled = predict_image(net, ch, torch.device("cpu"), tile=16)
    assert tiled.shape == (2,) + shape
    np.testing.assert_allclose(tiled, whole, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["square", "hex"])
def test_test_time_augmentation_undoes_its_transforms(kind):
    # a pointwise "model" (identity on channel 3) must give back the input exactly after TTA
    from napari_s2s.core.impute import predict_tta

    class Echo(torch.nn.Module):
        def forward(self, x):
            return [x[:, 3:4] * 2.0]

    ch = np.random.default_rng(1).normal(size=(2, 5, 9, 13)).astype(np.float32)
    out = predict_tta(Echo(), ch, kind, torch.device("cpu"), tile=128)
    np.testing.assert_allclose(out, 2.0 * ch[:, 3], rtol=1e-6)
