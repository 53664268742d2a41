"""CDCIN: shapes on any grid size, presets, data consistency, residual start."""

from __future__ import annotations

import pytest
import torch

from napari_s2s.core.s2s.engine import S2SConfig
from napari_s2s.core.s2s.model import CDCIN, NetSpec, n_parameters
from napari_s2s.core.s2s.train import make_model, masked_loss


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("size", [(16, 16), (10, 15), (7, 9), (33, 20), (3, 40)])
def test_any_grid_size_with_attention(size):
    torch.manual_seed(0)
    spec = NetSpec(
        in_channels=5, cascades=2, features=8, blocks=1, layers=2, growth=8, window=8, heads=2, mlp_ratio=1.0
    )
    net = CDCIN(spec)
    x = torch.randn(2, 5, *size)
    outs = net(x)
    assert len(outs) == 2
    assert all(o.shape == (2, 1) + size for o in outs)
    assert all(torch.isfinite(o).all() for o in outs)


def test_paper_preset_has_the_paper_size_and_trains_a_few_steps():
    cfg = S2SConfig.from_preset("paper")
    assert (cfg.cascades, cfg.features, cfg.blocks, cfg.layers, cfg.growth, cfg.window) == (3, 32, 8, 4, 32, 8)
    torch.manual_seed(0)
    net = make_model(10, cfg)
    n = n_parameters(net)
    assert 3.0e6 < n < 3.8e6  # about 1.1 M per cascade
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(2, 10, 12, 12)
    tgt = torch.randn(2, 1, 12, 12)
    mask = torch.ones_like(tgt, dtype=torch.bool)
    losses = []
    for _ in range(3):
        loss = masked_loss(net(x), tgt, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


def test_fast_preset_is_small():
    cfg = S2SConfig.from_preset("fast")
    assert n_parameters(make_model(10, cfg)) < 200_000


def test_untrained_network_starts_from_the_base_channel():
    spec = NetSpec(
        in_channels=6, cascades=3, features=8, blocks=1, layers=2, growth=8, window=4, base_channel=4, dc="none"
    )
    net = CDCIN(spec)
    x = torch.randn(1, 6, 9, 11)
    for o in net(x):
        torch.testing.assert_close(o, x[:, 4:5])


@pytest.mark.parametrize("dc", ["hard", "soft", "none"])
def test_data_consistency_steps(dc):
    spec = NetSpec(in_channels=3, cascades=2, features=8, blocks=1, layers=1, growth=4, window=4, dc=dc)
    net = CDCIN(spec)
    x = torch.randn(1, 1, 6, 6)
    x0 = torch.randn(1, 1, 6, 6)
    m = (torch.rand(1, 1, 6, 6) > 0.5).float()
    y = net.consistency(x, x0, m, 0)
    if dc == "hard":
        torch.testing.assert_close(y[m > 0], x0[m > 0])
        torch.testing.assert_close(y[m == 0], x[m == 0])
    elif dc == "soft":
        lam = torch.sigmoid(net.dc_logit[0])
        torch.testing.assert_close(y, x + lam * m * (x0 - x))
        assert 0 < float(lam.detach()) < 1
    else:
        torch.testing.assert_close(y, x)
    with pytest.raises(ValueError):
        CDCIN(NetSpec(in_channels=3, dc="bogus"))


def test_deep_supervision_weights_later_cascades_more():
    tgt = torch.zeros(1, 1, 2, 2)
    mask = torch.ones_like(tgt, dtype=torch.bool)
    first_bad = masked_loss([torch.ones_like(tgt), tgt.clone()], tgt, mask)
    last_bad = masked_loss([tgt.clone(), torch.ones_like(tgt)], tgt, mask)
    assert float(first_bad) == pytest.approx(1 / 3)
    assert float(last_bad) == pytest.approx(2 / 3)
    # the loss only sees masked positions
    half = torch.zeros_like(mask)
    half[..., 0, :] = True
    out = torch.zeros_like(tgt)
    out[..., 1, :] = 5.0
    assert float(masked_loss([out], tgt, half)) == 0.0
