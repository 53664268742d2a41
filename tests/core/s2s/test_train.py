"""Training pieces: cross-gene reconstruction, the loop's limits, stop flag and model selection."""

from __future__ import annotations

import numpy as np
import torch

from napari_s2s.core.s2s import sampling as S
from napari_s2s.core.s2s.engine import S2SConfig
from napari_s2s.core.s2s.natural import load_natural_images
from napari_s2s.core.s2s.train import (
    NaturalSampler,
    TrainState,
    build_problem,
    cross_gene_reconstruction,
    make_model,
    train_loop,
    validation_loss,
)


def _cfg(**kw):
    base = dict(budget_s=None, max_steps=6, threads=1, natural_images=False, features=8, blocks=1, layers=2,
                growth=8, window=4, heads=2, mlp_ratio=1.0, patch=8, batch_size=4)
    base.update(kw)
    return S2SConfig.from_preset("fast", **base)


def _problem(cfg, kind="square", n=14):
    rng = np.random.default_rng(0)
    rr, cc = np.mgrid[0:n, 0:n]
    rr, cc = rr.ravel(), cc.ravel()
    if kind == "hex":
        keep = (rr + cc) % 2 == 0
        rr, cc = rr[keep], cc[keep]
    z = (np.sin(rr / 3.0)[:, None] + rng.normal(0, 0.3, (len(rr), 3))).astype(np.float32)
    return build_problem(rr, cc, kind, z, cfg, rng=rng)


def test_cross_gene_reconstruction_denoises_low_rank_data():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(200, 2))
    signal = scores @ rng.normal(size=(2, 400))  # many genes, as in a real panel
    noisy = signal + rng.normal(0, 0.7, signal.shape)
    rec = cross_gene_reconstruction(noisy[:, :5], noisy, max_k=20)
    assert rec.shape == (200, 5)
    assert np.mean((rec - signal[:, :5]) ** 2) < 0.5 * np.mean((noisy[:, :5] - signal[:, :5]) ** 2)


def test_loop_honours_max_steps_and_keeps_the_best_validated_weights():
    torch.set_num_threads(1)
    cfg = _cfg(max_steps=8, val_every_frac=0.25, min_val_spots=5)
    prob = _problem(cfg)
    assert prob.has_val  # enough spots for a validation split
    model = make_model(prob.n_channels, cfg)
    state = TrainState()
    events = list(train_loop(model, prob, cfg, torch.device("cpu"), state, lambda: False, max_steps=8))
    assert [e.step for e in events] == list(range(1, 9))
    assert state.steps == 8 and not state.stopped
    vals = [v for _, v in state.val_history]
    assert state.best_val == min(vals)
    model.load_state_dict(state.best_state)
    assert abs(validation_loss(model, prob, torch.device("cpu")) - state.best_val) < 1e-5


def test_stop_flag_ends_training_at_the_next_step():
    cfg = _cfg(max_steps=None, budget_s=60)
    prob = _problem(cfg, "hex")
    model = make_model(prob.n_channels, cfg)
    state = TrainState()
    n = 0
    for ev in train_loop(model, prob, cfg, torch.device("cpu"), state, lambda: n >= 2, budget_s=60):
        n = ev.step
    assert state.stopped and state.steps == 2 and state.best_state is not None


def test_natural_images_on_the_slide_lattice():
    imgs = load_natural_images(limit=2)
    assert imgs and all(im.dtype == np.float32 and 0 <= im.min() and im.max() <= 1 for im in imgs)
    cfg = _cfg()
    ns = NaturalSampler(imgs, "hex", 8, cfg)
    ch, tg, lm = ns.sample(np.random.default_rng(0))
    assert ch.shape == (S.n_input_channels(len(cfg.sigmas), True), 8, 8) and tg.shape == (1, 8, 8)
    nodes = ch[2] > 0
    kept = ch[1] > 0
    assert not (lm[0] & kept).any() and not (lm[0] & ~nodes).any()  # targets: non-kept lattice nodes
    assert 0.15 < kept.sum() / nodes.sum() < 0.35


def test_time_the_consumer_holds_the_loop_is_not_charged_to_the_budget():
    import time

    torch.set_num_threads(1)
    cfg = _cfg(max_steps=None, budget_s=0.6, early_stopping=False)
    prob = _problem(cfg)
    model = make_model(prob.n_channels, cfg)
    state = TrainState()
    t0 = time.perf_counter()
    held = 0.0
    for ev in train_loop(model, prob, cfg, torch.device("cpu"), state, lambda: False, budget_s=0.6):
        time.sleep(0.2)  # e.g. a preview map computed between two events
        held += 0.2
    wall = time.perf_counter() - t0
    assert ev.elapsed_s < 0.6 + 0.5 and state.seconds <= wall - held + 0.05
    assert state.steps >= 4, "the pauses ate the training budget"


def test_validations_are_spaced_by_their_cost(monkeypatch):
    import time

    import napari_s2s.core.s2s.train as T

    calls = []

    def slow_validation(model, prob, device, chunk=16):
        calls.append(time.perf_counter())
        time.sleep(0.25)
        return 1.0 / len(calls)

    monkeypatch.setattr(T, "validation_loss", slow_validation)
    cfg = _cfg(max_steps=None, budget_s=3.0, val_every_frac=0.01, min_val_spots=5)
    prob = _problem(cfg)
    assert prob.has_val
    state = TrainState()
    list(T.train_loop(make_model(prob.n_channels, cfg), prob, cfg, torch.device("cpu"), state, lambda: False,
                      budget_s=3.0))
    gaps = np.diff(calls[:-1])  # the last one is the final validation after the budget
    assert len(calls) >= 3
    assert gaps.min() >= T.VAL_COST_RATIO * 0.25 - 0.02  # without the rule: every 0.5 s
