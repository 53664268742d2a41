"""Training S2S-ST on one slide: the sparser -> sparse problem, natural-image co-learning, the loop.

Everything here works on arrays (measured lattice coordinates and values), not on a ``Slide``, so that
the benchmark's method interface and the GUI share one code path. The loop is a generator of typed
:class:`ProgressEvent` objects; it honours a time budget and/or a step count and a cooperative stop
flag, and keeps the best model by a validation loss measured on measured data only.

Data (no hidden value can enter a batch: the sparse-level image holds measured values only)
-------------------------------------------------------------------------------------------
* The measured spots are laid out on their own lattice (the "sparse level"). For each of the four
  cosets of the keep-1/4 sub-lattice, the kept values are the "sparser" input and every other measured
  value is a target. A random ``val_frac`` of the measured spots are never targets in training. The
  validation loss (model selection, early stopping) is measured on them at the dense scale by default
  (``val_mode="dense"``: impute the dense level from the other measured spots and score the held-out
  ones; the untrained network, which returns its smoother base, is the first candidate, so training
  must beat the smoother to be kept) or at the sparser -> sparse level (``val_mode="sparse"``).
* Genes are samples (one model for all chosen genes); each gene is standardised by its measured mean
  and standard deviation.
* Augmentation: lattice-keeping flips/rotations applied to the extracted windows.
* Natural images: grayscale crops on the same lattice (checkerboard for hex), same masks, fully
  supervised, a ``natural_share`` of each batch.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..events import ProgressEvent  # noqa: F401  (re-exported: engine and tests import it from here)
from . import sampling as S
from .model import CDCIN, NetSpec

#: With a time budget, validations are spaced at least this many times their own cost apart (they
#: take at most ~1/4 of the training time even when ``val_every_frac`` of a short budget is smaller).
VAL_COST_RATIO = 4.0


# ---------------------------------------------------------------------- cross-gene features
def cross_gene_reconstruction(values: np.ndarray, all_genes: np.ndarray | None, max_k: int = 30) -> np.ndarray:
    """Project each gene on the top principal components of the measured spots (denoising).

    Parameters
    ----------
    values
        (m, G) the genes to reconstruct.
    all_genes
        (m, n) the spots' values over many genes (``None``: use ``values``).
    max_k
        Most components considered; the number used is chosen by leave-one-out error of the
        projection on the measured spots (closed form, hat-matrix diagonal).

    Returns
    -------
    (m, G) float32 reconstruction (mean + projection on the chosen components).
    """
    x = values if all_genes is None else all_genes
    y = np.asarray(values, dtype=np.float64)
    m = x.shape[0]
    yc = y - y.mean(0)
    kmax = int(max(1, min(max_k, m // 4, x.shape[1])))
    if x.shape[0] * x.shape[1] > GRAM_ABOVE:  # real-size slides: no float64 copies of the matrix
        u = _top_left_singular(x, kmax)
        kmax = u.shape[1]
    else:
        x = np.asarray(x, dtype=np.float64)
        u, _, _ = np.linalg.svd(x - x.mean(0), full_matrices=False)
        u = u[:, :kmax]
    best_k, best_err = 1, np.inf
    for k in range(1, kmax + 1):
        uk = u[:, :k]
        fit = uk @ (uk.T @ yc)
        h = (uk**2).sum(1) + 1.0 / m
        err = float((((yc - fit) / np.maximum(1 - h, 1e-3)[:, None]) ** 2).sum())
        if err < best_err:
            best_k, best_err = k, err
    uk = u[:, :best_k]
    return (y.mean(0) + uk @ (uk.T @ yc)).astype(np.float32)


#: Above this many values (spots x genes), :func:`cross_gene_reconstruction` takes the principal
#: directions from the genes' Gram matrix, accumulated over blocks of spots (memory: genes x genes),
#: instead of an SVD of the whole centred matrix in float64 (three copies of a real-size matrix).
GRAM_ABOVE = 20_000_000


def _top_left_singular(x: np.ndarray, k: int, block: int = 65_536) -> np.ndarray:
    """The first ``k`` left singular vectors (m, k) of the column-centred ``x``, blockwise.

    Components with a singular value below 1e-6 of the largest are dropped: float32 values hold no
    direction there (the SVD would return rounding noise, the Gram matrix cannot resolve it).
    """
    m, n = x.shape
    mean = np.zeros(n)
    for a in range(0, m, block):
        mean += np.asarray(x[a : a + block], np.float64).sum(0)
    mean /= m
    gram = np.zeros((n, n))
    for a in range(0, m, block):
        c = np.asarray(x[a : a + block], np.float64) - mean
        gram += c.T @ c
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1][:k]
    sv = np.sqrt(np.maximum(evals[order], 0.0))
    keep = sv > 1e-6 * max(sv[0], 1e-300)
    v = evecs[:, order[keep]] / sv[keep]
    u = np.empty((m, int(keep.sum())))
    for a in range(0, m, block):
        u[a : a + block] = (np.asarray(x[a : a + block], np.float64) - mean) @ v
    return u


# ---------------------------------------------------------------------- problem
@dataclass
class TrainProblem:
    """The precomputed sparser -> sparse training data of one slide (all genes, all phases)."""

    kind: str
    channels: list  # per phase: (G, Cin, H, W) float32
    target: np.ndarray  # (G, H, W) standardised measured values
    loss_mask: list  # per phase: (H, W) bool, targets used in training
    val_mask: list  # per phase: (H, W) bool, held-out targets
    starts: list  # per phase: (k, 2) window corners
    patch: int
    n_channels: int
    genes: int
    val_samples: list = field(default_factory=list)  # fixed (phase, gene) whole images
    dense_val: tuple | None = None  # (channels (Gv, Cin, H, W), ii, jj, target (Gv, n)) at the dense level
    tile: int = 64

    @property
    def has_val(self) -> bool:
        return bool(self.val_samples) or self.dense_val is not None


def standardise(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and standard deviation (>= 1e-3) of measured values."""
    v = np.asarray(values, dtype=np.float64)
    mu = v.mean(0)
    sd = np.maximum(v.std(0), 1e-3)
    return mu.astype(np.float32), sd.astype(np.float32)


def build_problem(
    rows: np.ndarray,
    cols: np.ndarray,
    kind: str,
    z: np.ndarray,
    config,
    recon: np.ndarray | None = None,
    covariates: Callable | None = None,
    rng: np.random.Generator | None = None,
) -> TrainProblem:
    """Lay the (standardised) measured values ``z`` (m, G) out at the sparse level and precompute inputs.

    ``rows, cols`` are measured-lattice coordinates; ``covariates(R, C) -> (n, K)`` is evaluated at the
    dense-level coordinates ``(2 row, 2 col)`` of the measured spots.
    """
    rng = rng or np.random.default_rng(config.seed)
    m, g = z.shape
    img = S.lattice_image(rows, cols, z, kind, pad=0, min_shape=1)
    patch = int(min(config.patch, max(img.shape)))
    img = S.lattice_image(rows, cols, z, kind, pad=0, min_shape=patch)
    rec_img = None
    if config.cross_gene and recon is not None:
        rec_img = S.lattice_image(rows, cols, recon, kind, min_shape=patch).values
    cov_img = None
    if covariates is not None:
        cov = np.asarray(covariates(2 * np.asarray(rows), 2 * np.asarray(cols)), dtype=np.float32)
        cov_img = S.lattice_image(rows, cols, cov, kind, min_shape=patch).values
    # validation spots: measured spots that are never training targets
    val_spot = np.zeros(m, dtype=bool)
    n_val = int(round(config.val_frac * m))
    if config.early_stopping and config.val_frac > 0 and n_val >= max(config.min_val_spots, 2):
        val_spot[rng.choice(m, n_val, replace=False)] = True
    val_img = np.zeros(img.shape, dtype=bool)
    val_img[np.asarray(rows)[val_spot] - img.origin[0], np.asarray(cols)[val_spot] - img.origin[1]] = True
    parity = int((rows[0] + cols[0]) % 2) if kind == "hex" else 0
    chans, lmask, vmask, starts = [], [], [], []
    for ph in S.phase_origins(kind, parity):
        kept = S.keep_quarter_image(img, ph)
        if kept.sum() < 2:
            continue
        chans.append(
            S.make_channels(img.values, kept, img.nodes, kind, rec_img, config.cross_gene, config.sigmas, cov_img, config.adaptive)
        )
        lm = img.present & ~kept & ~val_img
        lmask.append(lm)
        vmask.append(img.present & ~kept & val_img)
        st = S.window_starts(lm, patch, config.min_window_frac)
        starts.append(st)
    if not chans or all(len(s) == 0 for s in starts):
        raise ValueError("too few measured spots to build a training problem")
    prob = TrainProblem(
        kind=kind,
        channels=chans,
        target=img.values,
        loss_mask=lmask,
        val_mask=vmask,
        starts=starts,
        patch=patch,
        n_channels=chans[0].shape[1],
        genes=g,
    )
    prob.tile = int(config.tile)
    if val_spot.any() and config.val_mode == "dense":
        # the dense-scale check: the same dense-level inference as imputation, with the validation
        # spots removed from the measured input, scored at their own positions
        from .impute import dense_channels

        rows = np.asarray(rows)
        cols = np.asarray(cols)
        keep = ~val_spot
        gsel = np.arange(g)
        approx_px = 4 * img.shape[0] * img.shape[1]
        cap = max(4, int(config.val_pixels) // max(approx_px, 1))
        if g > cap:
            gsel = np.sort(rng.choice(g, cap, replace=False))
        rec = None if recon is None else recon[keep][:, gsel]
        vr, vc = 2 * rows[val_spot], 2 * cols[val_spot]
        ch, (r0, c0) = dense_channels(
            rows[keep], cols[keep], kind, z[keep][:, gsel], config, vr, vc, rec, covariates
        )
        prob.dense_val = (ch, vr - r0, vc - c0, z[val_spot][:, gsel].T.copy())
    elif val_spot.any():
        # validation samples: whole sparse-level images, every (phase, gene) pair while the pixel
        # count stays modest, else a fixed random subset of them
        pairs = [(p, gi) for p in range(len(chans)) if vmask[p].any() for gi in range(g)]
        cap = max(8, int(config.val_pixels) // max(img.shape[0] * img.shape[1], 1))
        if len(pairs) > cap:
            pick = rng.choice(len(pairs), cap, replace=False)
            pairs = [pairs[i] for i in sorted(pick)]
        prob.val_samples = pairs
    return prob


def _st_sample(prob: TrainProblem, rng: np.random.Generator, augment: bool, gene: int | None = None):
    valid = [i for i, s in enumerate(prob.starts) if len(s)]
    p = valid[int(rng.integers(len(valid)))]
    g = int(rng.integers(prob.genes)) if gene is None else gene
    y, x = prob.starts[p][int(rng.integers(len(prob.starts[p])))]
    P = prob.patch
    ch = prob.channels[p][g, :, y : y + P, x : x + P]
    tg = prob.target[g, y : y + P, x : x + P][None]
    lm = prob.loss_mask[p][y : y + P, x : x + P][None]
    if augment:
        syms = S.symmetries(prob.kind)
        sym = syms[int(rng.integers(len(syms)))]
        ch, tg, lm = (S.apply_symmetry(a, sym) for a in (ch, tg, lm))
    return ch, tg, lm


class NaturalSampler:
    """Natural-image crops laid out on the slide's lattice with the same masks and input channels."""

    def __init__(self, images: list[np.ndarray], kind: str, patch: int, config, n_covariates: int = 0):
        self.kind = kind
        self.patch = patch
        self.config = config
        self.n_cov = n_covariates
        sig = max(config.sigmas)
        sy, sx = S._sigma_px(kind, sig)
        self.margin = int(np.ceil(3 * max(sy, sx)))
        need = patch + 2 * self.margin
        self.images = [im for im in images if min(im.shape) >= need] or [
            np.pad(im, ((0, max(0, need - im.shape[0])), (0, max(0, need - im.shape[1]))), mode="reflect")
            for im in images
        ]

    def sample(self, rng: np.random.Generator):
        im = self.images[int(rng.integers(len(self.images)))]
        n = self.patch + 2 * self.margin
        y = int(rng.integers(im.shape[0] - n + 1))
        x = int(rng.integers(im.shape[1] - n + 1))
        crop = im[y : y + n, x : x + n].astype(np.float32)
        parity = int(rng.integers(2)) if self.kind == "hex" else 0
        nodes = S.node_mask((n, n), (0, 0), self.kind, parity)
        v = crop[nodes]
        crop = (crop - v.mean()) / max(float(v.std()), 0.05)
        crop = np.where(nodes, crop, 0.0).astype(np.float32)
        phases = S.phase_origins(self.kind, parity)
        ph = phases[int(rng.integers(len(phases)))]
        rr, cc = np.mgrid[0:n, 0:n]
        kept = S.keep_quarter(rr, cc, self.kind, ph) & nodes
        cov = np.zeros((self.n_cov, n, n), np.float32) if self.n_cov else None
        ch = S.make_channels(crop[None], kept, nodes, self.kind, None, self.config.cross_gene, self.config.sigmas, cov, self.config.adaptive)[0]
        sl = slice(self.margin, self.margin + self.patch)
        ch = ch[:, sl, sl]
        tg = crop[None, sl, sl]
        lm = (nodes & ~kept)[None, sl, sl]
        syms = S.symmetries(self.kind)
        sym = syms[int(rng.integers(len(syms)))]
        return tuple(S.apply_symmetry(a, sym) for a in (ch, tg, lm))


# ---------------------------------------------------------------------- loop
def masked_loss(outs: list[torch.Tensor], target: torch.Tensor, mask: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Deep-supervised loss: cascade ``c`` (1-based) weighted ``c / C``; per-sample masked mean."""
    n = len(outs)
    total = 0.0
    wsum = 0.0
    m = mask.float()
    denom = m.sum().clamp_min(1.0)
    for c, out in enumerate(outs, start=1):
        d = out - target
        err = d * d if kind == "mse" else d.abs()
        total = total + (c / n) * (err * m).sum() / denom
        wsum += c / n
    return total / wsum


def make_model(n_channels: int, config) -> CDCIN:
    """Build the CDCIN of a config for ``n_channels`` input channels."""
    return CDCIN(spec_of(n_channels, config))


def spec_of(n_channels: int, config) -> NetSpec:
    """The :class:`NetSpec` of a config."""
    base = None
    if config.base == "smooth":
        base = S.channel_index("smooth", len(config.sigmas), config.cross_gene)
    elif config.base == "pca":
        base = S.channel_index("pca", len(config.sigmas), config.cross_gene)
    return NetSpec(
        in_channels=n_channels,
        cascades=config.cascades,
        features=config.features,
        blocks=config.blocks,
        layers=config.layers,
        growth=config.growth,
        window=config.window,
        attention=config.attention,
        heads=config.heads,
        mlp_ratio=config.mlp_ratio,
        dc=config.dc,
        base_channel=base,
    )


@torch.no_grad()
def validation_loss(model: CDCIN, prob: TrainProblem, device: torch.device, chunk: int = 16) -> float | None:
    """Mean squared error on the held-out measured spots (last cascade).

    ``dense`` validation: the dense-level prediction at the validation spots from the other measured
    spots; ``sparse``: the sparser -> sparse prediction at them (whole sparse-level images).
    """
    if prob.dense_val is not None:
        from .impute import predict_image

        was = model.training
        ch, ii, jj, tgt = prob.dense_val
        pred = predict_image(model, ch, device, prob.tile)[:, ii, jj]
        model.train(was)
        return float(np.mean((pred - tgt) ** 2))
    if not prob.val_samples:
        return None
    was = model.training
    model.eval()
    total, count = 0.0, 0.0
    for i in range(0, len(prob.val_samples), chunk):
        part = prob.val_samples[i : i + chunk]
        ch = torch.from_numpy(np.stack([prob.channels[p][g] for p, g in part])).to(device)
        tg = torch.from_numpy(np.stack([prob.target[g] for p, g in part])[:, None]).to(device)
        vm = torch.from_numpy(np.stack([prob.val_mask[p] for p, g in part])[:, None]).to(device)
        out = model(ch)[-1]
        total += float((((out - tg) ** 2) * vm).sum())
        count += float(vm.sum())
    model.train(was)
    return total / max(count, 1.0)


@dataclass
class TrainState:
    """What training leaves behind: the best weights and statistics."""

    best_state: dict | None = None
    best_val: float | None = None
    best_step: int = 0
    steps: int = 0
    seconds: float = 0.0
    last_loss: float | None = None
    stopped: bool = False
    early_stopped: bool = False
    losses: list = field(default_factory=list)
    val_history: list = field(default_factory=list)
    #: the module being validated (the weight average when ``ema`` is on) while the loop runs
    live: Any = None


def train_loop(
    model: CDCIN,
    prob: TrainProblem,
    config,
    device: torch.device,
    state: TrainState,
    should_stop: Callable[[], bool],
    natural: NaturalSampler | None = None,
    budget_s: float | None = None,
    max_steps: int | None = None,
    gene: int | None = None,
    rng: np.random.Generator | None = None,
) -> Iterator[ProgressEvent]:
    """Optimise ``model`` on ``prob``; yields a :class:`ProgressEvent` after every step.

    Stops at the time budget, the step limit, early stopping (``patience`` validations without
    improvement) or when ``should_stop()`` turns true; ``state.best_state`` then holds the weights
    with the best validation loss (the last weights when there is no validation set).
    """
    rng = rng or np.random.default_rng(config.seed)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(config.beta1, 0.999))
    bs = config.batch_size
    n_nat = int(round(bs * config.natural_share)) if natural is not None else 0
    n_st = max(1, bs - n_nat)
    t0 = time.perf_counter()
    last_val_t = t0
    val_every_s = max(0.5, (budget_s or 60.0) * config.val_every_frac)
    val_cost = 0.0  # seconds the last validation took: validations stay under 1/VAL_COST_RATIO of the time
    paused = 0.0  # seconds the consumer held the loop between events (e.g. a preview): not charged to the budget
    val_every_steps = max(5, int((max_steps or 200) * config.val_every_frac))
    bad = 0
    step = 0
    # exponential moving average of the weights (what is validated and kept), warmed up
    ema = copy.deepcopy(model) if config.ema else None
    evaluated = ema if ema is not None else model
    state.live = evaluated
    if prob.has_val and state.best_state is None:
        tv = time.perf_counter()
        v = validation_loss(evaluated, prob, device)
        val_cost = time.perf_counter() - tv
        state.val_history.append((state.steps, v))
        state.best_val, state.best_step, state.best_state = v, state.steps, _copy_state(evaluated)
    while True:
        el = time.perf_counter() - t0 - paused
        if should_stop():
            state.stopped = True
            break
        if max_steps is not None and step >= max_steps:
            break
        if budget_s is not None and el >= budget_s:
            break
        samples = [_st_sample(prob, rng, config.augment, gene) for _ in range(n_st)]
        samples += [natural.sample(rng) for _ in range(n_nat)]
        ch = torch.from_numpy(np.stack([s[0] for s in samples])).to(device)
        tg = torch.from_numpy(np.stack([s[1] for s in samples])).to(device)
        lm = torch.from_numpy(np.stack([s[2] for s in samples])).to(device)
        outs = model(ch)
        loss = masked_loss(outs, tg, lm, config.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if ema is not None:
            d = min(float(config.ema), (1.0 + step) / (10.0 + step))
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), model.parameters()):
                    pe.mul_(d).add_(p.detach(), alpha=1.0 - d)
        state.steps += 1
        state.last_loss = float(loss.detach())
        state.losses.append(state.last_loss)
        now = time.perf_counter()
        el = now - t0 - paused
        do_val = (
            budget_s is not None and now - last_val_t >= max(val_every_s, VAL_COST_RATIO * val_cost)
        ) or (budget_s is None and step % val_every_steps == 0)
        if do_val and prob.has_val:
            last_val_t = now
            v = validation_loss(evaluated, prob, device)
            val_cost = time.perf_counter() - now
            state.val_history.append((state.steps, v))
            if state.best_val is None or v < state.best_val:
                state.best_val = v
                state.best_step = state.steps
                state.best_state = _copy_state(evaluated)
                bad = 0
            else:
                bad += 1
            if config.patience and bad >= config.patience:
                state.early_stopped = True
        eta = None
        if budget_s is not None:
            eta = max(budget_s - el, 0.0)
        if max_steps is not None:
            per = el / step
            e2 = per * (max_steps - step)
            eta = e2 if eta is None else min(eta, e2)
        ty = time.perf_counter()
        yield ProgressEvent(
            "train",
            state.steps,
            max_steps,
            state.last_loss,
            el,
            eta,
            f"step {state.steps} loss {state.last_loss:.4f}",
            state.best_val,
        )
        held = time.perf_counter() - ty
        paused += held
        last_val_t += held
        if state.early_stopped:
            break
    state.seconds += time.perf_counter() - t0 - paused
    state.live = None
    # final validation so the last stretch of training can win
    if prob.has_val and not state.early_stopped and step > 0:
        v = validation_loss(evaluated, prob, device)
        state.val_history.append((state.steps, v))
        if state.best_val is None or v < state.best_val:
            state.best_val, state.best_step, state.best_state = v, state.steps, _copy_state(evaluated)
    if state.best_state is None or not prob.has_val:
        state.best_state = _copy_state(evaluated)
        state.best_step = state.steps


def _copy_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


__all__ = [
    "ProgressEvent",
    "TrainProblem",
    "TrainState",
    "build_problem",
    "cross_gene_reconstruction",
    "make_model",
    "masked_loss",
    "spec_of",
    "standardise",
    "train_loop",
    "NaturalSampler",
]
