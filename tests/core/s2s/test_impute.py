"""Dense x2 positions, sliding-window inference, final data consistency."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_s2s.core.s2s.impute import dense_positions, final_consistency, predict_image
from napari_s2s.core.s2s.model import CDCIN, NetSpec


def test_square_dense_positions_are_the_3x3_blocks_around_each_spot():
    rows = np.array([0, 0, 1, 5])
    cols = np.array([0, 1, 0, 7])
    R, C = dense_positions(rows, cols, "square")
    want = {(2 * r + a, 2 * c + b) for r, c in zip(rows, cols) for a in (-1, 0, 1) for b in (-1, 0, 1)}
    assert set(zip(R.tolist(), C.tolist())) == want
    assert len(R) == len(want)  # no duplicates


@pytest.mark.parametrize("name", ["st_breast_cancer_layer2.h5ad", "visium_mouse_brain_dg.h5ad"])
def test_the_dense_grid_reaches_as_far_beyond_the_spots_on_every_side(name, data_dir):
    """The imputed area is symmetric about the measured spots: as far beyond the first row as the last."""
    from napari_s2s.core.data.io import read_slide

    slide = read_slide(data_dir / name)
    use = slide.usable()
    rows, cols = slide.array_row[use], slide.array_col[use]
    R, C = dense_positions(rows, cols, slide.kind)
    assert 2 * rows.min() - R.min() == R.max() - 2 * rows.max() == 1
    assert 2 * cols.min() - C.min() == C.max() - 2 * cols.max() >= 1
    for r, c in zip(2 * rows, 2 * cols):  # every spot has its whole neighbourhood, whichever side it is on
        near = (np.abs(R - r) <= 1) & (np.abs(C - c) <= (1 if slide.kind == "square" else 2))
        assert near.sum() == (9 if slide.kind == "square" else 7)


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


def test_tiles_keep_their_centres_and_match_the_whole_image_for_a_convolutional_model():
    """Large images go through tiles that keep only pixels >= tile // 8 from an inner edge: for a
    network whose context is smaller than that, exactly the whole image's prediction."""
    from napari_s2s.core.s2s.impute import _tile_spans

    for n, t, halo in [(150, 64, 8), (65, 64, 8), (300, 512, 64), (1000, 512, 64), (17, 16, 2)]:
        spans = _tile_spans(n, t, halo)
        covered = np.zeros(n, int)
        for s, (a, b) in spans:
            assert s <= a < b <= s + t and (a == 0 or a >= s + halo) and (b == n or b <= s + t - halo)
            covered[a:b] += 1
        assert covered.min() >= 1
    torch.manual_seed(1)
    net = CDCIN(NetSpec(in_channels=3, cascades=1, features=4, blocks=1, layers=1, growth=4, attention=False))
    net.eval()
    with torch.no_grad():
        net.nets[0].out.weight.normal_()  # zero at initialisation: the output would not depend on the input
    ch = np.random.default_rng(2).normal(size=(2, 3, 150, 170)).astype(np.float32)
    whole = predict_image(net, ch, torch.device("cpu"), tile=512)
    tiled = predict_image(net, ch, torch.device("cpu"), tile=64)  # 9 tiles, halo 8 > the network's context
    assert np.abs(whole).max() > 1.0
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-5)  # averaging half-overlapping tiles: off by ~3


@pytest.mark.parametrize("kind", ["square", "hex"])
def test_test_time_augmentation_undoes_its_transforms(kind):
    # a pointwise "model" (identity on channel 3) must give back the input exactly after TTA
    from napari_s2s.core.s2s.impute import predict_tta

    class Echo(torch.nn.Module):
        def forward(self, x):
            return [x[:, 3:4] * 2.0]

    ch = np.random.default_rng(1).normal(size=(2, 5, 9, 13)).astype(np.float32)
    out = predict_tta(Echo(), ch, kind, torch.device("cpu"), tile=128)
    np.testing.assert_allclose(out, 2.0 * ch[:, 3], rtol=1e-6)


def _reference_window_attention(att, x, mask):
    """Shifted-window attention written out in full (softmax over q k^T / sqrt(d) + bias + mask)."""
    bw, n, c = x.shape
    d = c // att.heads
    qkv = att.qkv(x).reshape(bw, n, 3, att.heads, d).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    bias = att.bias_table[att.rel_index.reshape(-1)].reshape(n, n, att.heads).permute(2, 0, 1)
    nw = mask.shape[0]
    full = bias[None, None] + mask[None, :, None]  # (1, nW, heads, N, N)
    full = full.expand(bw // nw, -1, -1, -1, -1).reshape(bw, att.heads, n, n)
    w = torch.softmax(q @ k.transpose(-1, -2) / d**0.5 + full, dim=-1)
    return att.proj((w @ v).transpose(1, 2).reshape(bw, n, c))


def test_masked_window_attention_matches_the_written_out_formula_for_a_batch():
    """The per-image attention calls (speed) give the same numbers as one masked call over the batch."""
    from napari_s2s.core.s2s.model import HAB

    torch.manual_seed(0)
    hab = HAB(dim=8, window=4, heads=2, shift=2, mlp_ratio=2.0).eval()
    torch.nn.init.normal_(hab.attn.bias_table, std=1.0)  # a bias that matters
    mask = hab._mask(8, 12, torch.device("cpu"))
    assert mask.shape == (6, 16, 16) and (mask != 0).any()
    x = torch.randn(3 * 6, 16, 8)  # 3 images of 6 windows each
    with torch.inference_mode():
        got = hab.attn(x, mask)
        want = _reference_window_attention(hab.attn, x, mask)
        # a different mask per image would change the result: the images really use their own windows
        other = _reference_window_attention(hab.attn, x, mask.roll(1, 0))
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, other, atol=1e-3)


def test_dense_prediction_with_attention_is_unchanged_by_batching():
    """Whole-grid TTA prediction of an attention CDCIN equals the per-gene forward passes."""
    from napari_s2s.core.s2s.impute import predict_tta

    torch.manual_seed(1)
    spec = NetSpec(in_channels=3, cascades=2, features=8, blocks=1, layers=2, growth=8, window=4, heads=2)
    model = CDCIN(spec).eval()
    for net in model.nets:
        torch.nn.init.normal_(net.out.weight, std=0.1)
    ch = np.random.default_rng(0).normal(size=(3, 3, 13, 18)).astype(np.float32)
    got = predict_tta(model, ch, "hex", torch.device("cpu"), tile=64, tta=True)
    with torch.no_grad():
        want = np.mean([_flip_pred(model, ch, fr, fc) for fr in (False, True) for fc in (False, True)], axis=0)
    assert np.abs(got).max() > 1e-3
    np.testing.assert_allclose(got, want, atol=1e-5)


def _flip_pred(model, ch, fr, fc):
    """One TTA member computed gene by gene: flip the input, predict, flip back."""
    sl = (Ellipsis, slice(None, None, -1 if fr else 1), slice(None, None, -1 if fc else 1))
    x = np.ascontiguousarray(ch[sl])
    out = np.stack([model(torch.from_numpy(x[i : i + 1]))[-1][0, 0].numpy() for i in range(len(x))])
    return out[sl]


def test_a_network_still_training_trains_on_after_a_prediction():
    """Predicting with the live network (the ``s2s-noema`` ablation has no weight average) leaves its
    weights ordinary tensors: the next training step's backward pass works and changes them."""
    torch.manual_seed(0)
    model = CDCIN(NetSpec(in_channels=3, cascades=1, blocks=1, layers=1, features=8, growth=8, heads=2))
    model.train()
    x = torch.randn(2, 3, 16, 16)
    predict_image(model, x.numpy(), torch.device("cpu"))
    assert model.training
    assert not any(p.is_inference() for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    model(x)[-1].square().mean().backward()
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
