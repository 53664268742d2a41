"""Training S2S-ST on one slide: the sparser -> sparse problem, natural-image co-learning, the loop.

Everything here works on arrays (measured lattice coordinates and values), not on a ``Slide``, so that
the benchmark's method interface and the GUI share one code path. The loop is a generator of typed
:class:`ProgressEvent` objects; it honours a time budget and/or a step count and a cooperative stop
flag.

Data (no hidden value can enter a batch: the sparse-level image holds measured values only)
-------------------------------------------------------------------------------------------
* The measured spots are laid out on their own lattice (the "sparse level"). For each of the four
  cosets of the keep-1/4 sub-lattice (the "phases"), the kept values are the "sparser" input and
  every other measured value is a target.
* Cross-fitting: the measured spots are split into ``folds`` random folds and one network is trained
  per fold, never with that fold's spots as targets (they may be inputs). Each network's predictions
  at its own fold's spots, from the phases where those spots are not kept, are therefore
  out-of-fold: the engine judges the networks against the base predictor on them
  (:mod:`napari_s2s.core.s2s.blend`), and averages the networks for the final maps (an ensemble).
* Genes are samples (one network for all chosen genes); each gene is standardised by its measured
  mean and standard deviation.
* Augmentation: lattice-keeping flips/rotations applied to the extracted windows.
* Natural images: grayscale crops on the same lattice (checkerboard for hex), same masks, fully
  supervised, a ``natural_share`` of each batch.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..events import ProgressEvent  # noqa: F401  (re-exported: engine and tests import it from here)
from . import sampling as S
from .model import CDCIN, NetSpec


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


def _top_left_singular(x: np.ndarray, k: int, block: int = 16_384) -> np.ndarray:
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
    """The precomputed sparser -> sparse training data of one slide (all genes, phases and folds).

    Attributes
    ----------
    channels
        Per phase: (G, Cin, H, W) float32 network inputs (the phase's coset kept).
    target
        (G, H, W) standardised measured values at the sparse level (0 where no spot).
    present
        (H, W) bool: positions holding a measured spot.
    kept
        Per phase: (H, W) bool, the spots kept as input.
    fold_img
        (H, W) int: the fold of the spot at each position (-1: no spot).
    spot_pixels
        (m, 2) the image pixel of each measured spot (in the order of the training arrays).
    folds
        (m,) the fold of each measured spot.
    starts
        ``starts[fold][phase]``: (k, 2) corners of training windows of that fold's network.
    """

    kind: str
    channels: list
    target: np.ndarray
    present: np.ndarray
    kept: list
    fold_img: np.ndarray
    spot_pixels: np.ndarray
    folds: np.ndarray
    n_folds: int
    starts: list
    patch: int
    n_channels: int
    genes: int
    tile: int = 64
    targets: int = 0  # the first ``targets`` genes are the user's (predicted); 0: all of them
    gene_p: np.ndarray | None = None  # (genes,) probability of drawing each gene; None: uniform
    #: what :func:`_st_sample` needs to rebuild a window's inputs with some kept spots dropped
    #: (``config.kept_dropout``): nodes, cross-gene and covariate images, each phase's bandwidths
    #: (values, cross-gene) and the context margin in pixels; ``None``: off
    resample: dict | None = None
    #: per phase: (G, H, W) the targets of that phase when they differ from ``target`` (the inputs'
    #: values), e.g. what the base's H&E term leaves with the term conditioned on the phase's kept
    #: spots (``config.term_sources``); ``None``: ``target`` in every phase
    phase_targets: list | None = None
    #: what the count losses (``config.loss`` "poisson" / "nb") need, from :func:`attach_counts`: per
    #: phase the (G, H, W) offset that turns a standardised value back into a log-normalised one, the
    #: (H, W) size factor of each measured spot (0 elsewhere) and per gene the standard deviation, the
    #: dispersion and the null deviance; ``None``: the loss is on the standardised values
    counts: dict | None = None
    #: extra problems a share of the windows come from: the same slide one level sparser
    #: (``config.coarse_share``: each coset of the measured lattice's keep-1/4 sub-lattice laid out on a
    #: lattice of its own, :func:`coarse_problems`) or at the measured pitch with random holes
    #: (``config.hole_share``, :func:`hole_problems`), with the same genes, folds and window size; empty: off
    coarse: list = field(default_factory=list)
    #: of a coarse problem: the indices of its spots among the slide's measured spots; ``None``: the slide's
    sources: np.ndarray | None = None

    def target_of(self, phase: int) -> np.ndarray:
        """(G, H, W) the standardised values the networks learn in ``phase``."""
        return self.target if self.phase_targets is None else self.phase_targets[phase]

    @property
    def n_targets(self) -> int:
        """Genes that are predicted (the rest are auxiliary: trained on, never predicted)."""
        return self.targets or self.genes

    def loss_mask(self, phase: int, fold: int) -> np.ndarray:
        """(H, W) targets of network ``fold`` in ``phase``: spots not kept and not in the fold."""
        return self.present & ~self.kept[phase] & (self.fold_img != fold)


#: Measured spots per spatial block of :func:`assign_folds` (about 8 x 8 lattice steps).
SPOTS_PER_BLOCK = 64


def assign_folds(m: int, n_folds: int, rng: np.random.Generator, positions: np.ndarray | None = None) -> np.ndarray:
    """(m,) fold of each measured spot.

    Without ``positions``: a seeded random partition into ``n_folds`` near-equal folds. With
    ``positions`` (m, 2): spatial blocks, so that a network's held-out spots are not surrounded by
    its training targets. The spots are clustered (k-means on the positions) into ``n_folds`` blocks, or
    one per :data:`SPOTS_PER_BLOCK` spots on larger slides, and whole blocks go to the folds, largest
    first to the fold with the fewest spots (random folds when a fold would be left empty).
    """
    import warnings

    n_folds = max(1, int(n_folds))
    if positions is None or m < 2 * n_folds:
        return (rng.permutation(m) % n_folds).astype(np.int64)
    from scipy.cluster.vq import kmeans2

    pos = np.asarray(positions, np.float64)
    n_blocks = min(m, max(n_folds, int(round(m / SPOTS_PER_BLOCK))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty cluster: handled below
        _, block = kmeans2(pos, n_blocks, minit="++", seed=rng)
    sizes = np.bincount(block, minlength=n_blocks)
    fold_of_block = np.zeros(n_blocks, np.int64)
    load = np.zeros(n_folds)
    for b in np.argsort(-sizes + rng.random(n_blocks) * 0.5, kind="stable"):
        f = int(np.argmin(load + rng.random(n_folds) * 1e-6))
        fold_of_block[b] = f
        load[f] += sizes[b]
    folds = fold_of_block[block]
    if np.bincount(folds, minlength=n_folds).min() == 0:
        return (rng.permutation(m) % n_folds).astype(np.int64)
    return folds


def standardise(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and standard deviation (>= 1e-3) of measured values."""
    v = np.asarray(values, dtype=np.float64)
    mu = v.mean(0)
    sd = np.maximum(v.std(0), 1e-3)
    return mu.astype(np.float32), sd.astype(np.float32)


#: The largest NB dispersion (the Poisson limit: ``loss="poisson"``).
POISSON_THETA = 1e6


def attach_counts(
    prob: TrainProblem,
    mu: np.ndarray,
    sd: np.ndarray,
    terms: list | None = None,
    size_factors: np.ndarray | None = None,
    dispersion: bool = False,
) -> None:
    """Give ``prob`` what a count loss needs (:attr:`TrainProblem.counts`).

    A standardised value ``z`` of gene ``g`` is the log-normalised value ``v = z sd_g + mu_g (+ the
    phase's H&E term at that spot, ``terms[p]`` (m, n_targets), for residual networks)``, and
    ``expm1(v) / s`` the spot's count, ``s`` its size factor (median library size over the spot's;
    ``size_factors`` (m,), ``None``: all 1, e.g. values normalised upstream). A prediction ``v'``
    gives the mean count ``expm1(v') / s`` (the library size as offset), and the loss is the count's
    deviance: Poisson, or (``dispersion``) negative binomial with a per-gene dispersion ``theta``
    from the moments of the counts around a constant rate (spatial structure left in: an
    over-estimate of the noise, i.e. a cautious one). Each gene's deviance is divided by its null
    deviance (of that constant rate) over the measured spots, so that genes weigh as under the
    squared error on ``z``, whose null loss is 1 for every gene.
    """
    g_all = prob.genes
    pix = prob.spot_pixels
    mu = np.asarray(mu, np.float32)
    sd = np.asarray(sd, np.float32)
    shape = prob.target.shape[1:]
    plain = np.broadcast_to(mu[:, None, None], (g_all,) + shape).astype(np.float32)
    offsets, made = [], {}
    for p in range(len(prob.channels)):
        t = None if terms is None else terms[p]
        if id(t) not in made:
            off = plain.copy() if t is not None else plain
            if t is not None:
                t = np.asarray(t, np.float32)
                off[: t.shape[1], pix[:, 0], pix[:, 1]] += t.T
            made[id(t)] = off
        offsets.append(made[id(t)])
    m = len(pix)
    s = np.ones(m) if size_factors is None else np.asarray(size_factors, np.float64)
    if s.shape != (m,) or not np.all(np.isfinite(s) & (s > 0)):
        raise ValueError(f"size_factors must be {m} finite numbers > 0")
    size = np.zeros(shape, np.float32)
    size[pix[:, 0], pix[:, 1]] = s
    tg = prob.target_of(0)[:, pix[:, 0], pix[:, 1]]
    y = np.maximum(np.expm1(tg * sd[:, None] + offsets[0][:, pix[:, 0], pix[:, 1]]), 0.0)
    c = y / s  # (G, m) counts
    rate = c.sum(1) / (1.0 / s).sum()  # the constant scaled rate of each gene
    lam = rate[:, None] / s
    theta = np.full(g_all, POISSON_THETA)
    if dispersion:
        excess = ((c - lam) ** 2 - lam).sum(1)
        theta = np.where(excess > 0, (lam**2).sum(1) / np.maximum(excess, 1e-12), POISSON_THETA)
        theta = np.clip(theta, 0.05, POISSON_THETA)
    null = count_deviance(torch.from_numpy(c), torch.from_numpy(lam), torch.from_numpy(theta[:, None]))
    kappa = np.maximum(null.mean(1).numpy(), 1e-6)
    prob.counts = {
        "offset": offsets,
        "size": size,
        "sd": sd,
        "theta": theta.astype(np.float32),
        "kappa": kappa.astype(np.float32),
    }


def count_deviance(c: torch.Tensor, mean: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Negative-binomial deviance of counts ``c`` at ``mean`` with dispersion ``theta`` (the Poisson
    deviance as ``theta`` grows: :data:`POISSON_THETA`)."""
    xlogy = torch.special.xlogy
    return 2.0 * (xlogy(c, c) - xlogy(c, mean) - (c + theta) * (torch.log1p(c / theta) - torch.log1p(mean / theta)))


def count_window(prob: TrainProblem, p: int, g: int, y: int, x: int) -> np.ndarray:
    """(5, P, P) what the count loss needs beside a window's target (:func:`masked_loss`): offset,
    size factor, and the gene's sd, dispersion and null deviance."""
    c, P = prob.counts, prob.patch
    win = (slice(y, y + P), slice(x, x + P))
    const = [np.full((P, P), c[k][g], np.float32) for k in ("sd", "theta", "kappa")]
    return np.stack([c["offset"][p][g][win], c["size"][win], *const])


def natural_count_channels(patch: int) -> np.ndarray:
    """(5, P, P) a natural sample's count channels under the count loss: a negative size factor marks
    a sample without counts (its error is the squared one)."""
    out = np.ones((5, patch, patch), np.float32)
    out[0] = 0.0
    out[1] = -1.0
    return out


def build_problem(
    rows: np.ndarray,
    cols: np.ndarray,
    kind: str,
    z: np.ndarray,
    config,
    recon: np.ndarray | None = None,
    covariates: Callable | None = None,
    folds: np.ndarray | None = None,
    prior: Callable | None = None,
    bandwidth_ref: np.ndarray | None = None,
    patch: int | None = None,
    kept_sets: list | None = None,
) -> TrainProblem:
    """Lay the (standardised) measured values ``z`` (m, G) out at the sparse level and precompute inputs.

    ``rows, cols`` are measured-lattice coordinates; ``covariates(R, C) -> (n, K)`` is evaluated at the
    dense-level coordinates ``(2 row, 2 col)`` of the measured spots; ``folds`` (m,) assigns each spot
    to a network, which never has its own fold's spots as targets (``None``: one fold, so no
    target at all: give two folds or more). With ``config.base == "prior"``,
    ``prior(sources, r, c) -> (n, G)`` is the base predictor's standardised prediction at
    measured-lattice coordinates ``(r, c)`` from the measured spots ``sources`` (indices): each phase's
    prior channel is predicted from that phase's kept spots only. ``bandwidth_ref`` (m, N): standardised
    values of reference genes whose leave-one-out bandwidth at each phase's kept spots sets the
    smoothers' bandwidth (``config.adaptive``; default: the bandwidth of ``z`` itself). ``patch``:
    the training windows' size (default: ``config.patch``, or the image's size when it is smaller).
    ``kept_sets``: the phases' kept spots, each an (m,) boolean over the measured spots (default: the
    four cosets of the keep-1/4 sub-lattice).
    """
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    m, g = z.shape
    folds = np.zeros(m, np.int64) if folds is None else np.asarray(folds, np.int64)
    n_folds = int(folds.max()) + 1 if m else 1
    img = S.lattice_image(rows, cols, z, kind, pad=0, min_shape=1)
    patch = int(min(config.patch, max(img.shape))) if patch is None else int(patch)
    img = S.lattice_image(rows, cols, z, kind, pad=0, min_shape=patch)
    rec_img = None
    if config.cross_gene and recon is not None:
        rec_img = S.lattice_image(rows, cols, recon, kind, min_shape=patch).values
    cov_img = None
    if covariates is not None:
        cov = np.asarray(covariates(2 * rows, 2 * cols), dtype=np.float32)
        cov_img = S.lattice_image(rows, cols, cov, kind, min_shape=patch).values
    ref_img = None
    if bandwidth_ref is not None and config.adaptive:
        ref_img = S.lattice_image(rows, cols, np.asarray(bandwidth_ref, np.float32), kind, min_shape=patch).values
    pix = np.stack([rows - img.origin[0], cols - img.origin[1]], axis=1)
    fold_img = np.full(img.shape, -1, np.int64)
    fold_img[pix[:, 0], pix[:, 1]] = folds
    parity = int((rows[0] + cols[0]) % 2) if kind == "hex" else 0
    use_prior = config.base == "prior"
    if use_prior and prior is None:
        raise ValueError("base 'prior' needs the base predictor's prior function")
    nr, nc = np.nonzero(img.nodes)
    chans, kept_masks, bandwidths = [], [], []
    if kept_sets is None:
        masks = [S.keep_quarter_image(img, ph) for ph in S.phase_origins(kind, parity)]
    else:
        masks = []
        for ks in kept_sets:
            km = np.zeros(img.shape, bool)
            sel = np.asarray(ks, bool)
            km[pix[sel, 0], pix[sel, 1]] = True
            masks.append(km)
    for kept in masks:
        if kept.sum() < 2:
            continue
        bv, br = _phase_bandwidths(img.values, rec_img, ref_img, kept, kind, config.adaptive)
        pr = None
        if use_prior:
            pr = np.zeros((g,) + img.shape, np.float32)
            src = np.flatnonzero(kept[pix[:, 0], pix[:, 1]])
            pr[:, nr, nc] = np.asarray(prior(src, nr + img.origin[0], nc + img.origin[1]), np.float32).T
        chans.append(
            S.make_channels(
                img.values,
                kept,
                img.nodes,
                kind,
                rec_img,
                config.cross_gene,
                config.sigmas,
                cov_img,
                config.adaptive,
                use_prior,
                pr,
                bv,
                br,
            )
        )
        kept_masks.append(kept)
        bandwidths.append((bv, br))
    if not chans:
        raise ValueError("too few measured spots to build a training problem")
    prob = TrainProblem(
        kind=kind,
        channels=chans,
        target=img.values,
        present=img.present,
        kept=kept_masks,
        fold_img=fold_img,
        spot_pixels=pix,
        folds=folds,
        n_folds=n_folds,
        starts=[],
        patch=patch,
        n_channels=chans[0].shape[1],
        genes=g,
        tile=int(config.tile),
    )
    for f in range(n_folds):
        prob.starts.append(
            [S.window_starts(prob.loss_mask(p, f), patch, config.min_window_frac) for p in range(len(chans))]
        )
    if all(len(s) == 0 for per in prob.starts for s in per):
        raise ValueError("too few measured spots to build a training problem")
    if config.kept_dropout > 0:
        prob.resample = _resample_inputs(img, rec_img, cov_img, bandwidths, kind, config)
    return prob


def coarse_problems(
    rows: np.ndarray,
    cols: np.ndarray,
    kind: str,
    z: np.ndarray,
    config,
    recon: np.ndarray | None,
    covariates: Callable | None,
    folds: np.ndarray,
    bandwidth_ref: np.ndarray | None,
    patch: int,
) -> list[TrainProblem]:
    """The measured spots one level sparser, as training problems (``config.coarse_share``).

    Each of the four cosets of the measured lattice's keep-1/4 sub-lattice is itself a lattice of the
    same kind at double pitch; re-indexed to its own coordinates (``(row - r0) / 2``, ``(col - c0) /
    2``) it is a slide of a quarter of the spots, and :func:`build_problem` makes its sparser -> sparse
    pairs (keep 1/4 of the coset, predict the coset). The networks then see the mapping at two pitches
    of the same tissue, not one. Spots keep their fold (a network never has its own fold's spots as
    targets at either level); covariates are evaluated at the spots' true dense-grid positions.
    Cosets too small for a problem are left out.
    """
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    parity = int((rows[0] + cols[0]) % 2) if kind == "hex" else 0
    out = []
    for r0, c0 in S.phase_origins(kind, parity):
        sel = S.keep_quarter(rows, cols, kind, (r0, c0))
        if sel.sum() < 4:
            continue
        cov = None
        if covariates is not None:

            def cov(R, C, r0=r0, c0=c0):  # (2 row', 2 col') -> the spot's dense position 2 (2 row' + r0)
                return covariates(2 * np.asarray(R) + 2 * r0, 2 * np.asarray(C) + 2 * c0)

        try:
            cp = build_problem(
                (rows[sel] - r0) // 2,
                (cols[sel] - c0) // 2,
                kind,
                z[sel],
                config,
                None if recon is None else recon[sel],
                cov,
                folds[sel],
                None,
                None if bandwidth_ref is None else bandwidth_ref[sel],
                patch=patch,
            )
        except ValueError:
            continue
        cp.sources = np.flatnonzero(sel)
        out.append(cp)
    return out


def hole_problems(
    rows: np.ndarray,
    cols: np.ndarray,
    kind: str,
    z: np.ndarray,
    config,
    recon: np.ndarray | None,
    covariates: Callable | None,
    folds: np.ndarray,
    bandwidth_ref: np.ndarray | None,
    patch: int,
    seed: int = 0,
    draws: int = 4,
) -> list[TrainProblem]:
    """The measured spots at their own pitch, as a training problem (``config.hole_share``).

    Each of ``draws`` phases keeps every measured spot as input but a seeded random share
    ``config.hole_rate`` of them, which are the targets (never those of a network's own fold). The
    sparser -> sparse pairs of :func:`build_problem` keep a quarter of the spots, so the networks only
    ever see inputs twice as sparse as the measured lattice they impute from; here the inputs are as
    dense as at imputation, and the targets are real measured spots. Returns ``[]`` when no window
    qualifies.
    """
    rng = np.random.default_rng([int(seed), 104729])
    m = len(rows)
    sets = [rng.random(m) >= float(config.hole_rate) for _ in range(int(draws))]
    try:
        prob = build_problem(
            rows, cols, kind, z, config, recon, covariates, folds, None, bandwidth_ref, patch=patch, kept_sets=sets
        )
    except ValueError:
        return []
    prob.sources = np.arange(m)
    return [prob]


def _coarse_choices(prob: TrainProblem, n_folds: int) -> list[list[TrainProblem]]:
    """Per fold: the coarse problems that hold a training window for that fold's network."""
    return [[c for c in prob.coarse if f < len(c.starts) and any(len(s) for s in c.starts[f])] for f in range(n_folds)]


def _phase_bandwidths(values, rec_img, ref_img, kept, kind: str, adaptive: bool) -> tuple:
    """A phase's smoother bandwidths (values, cross-gene), chosen once: those of the reference genes
    when given, else each image's own leave-one-out bandwidth; ``None`` without ``adaptive``."""
    if not adaptive:
        return None, None
    bw = S.level_bandwidth(ref_img, kept, kind)
    if bw is not None:
        return bw, bw
    rec = None if rec_img is None else float(S.loo_bandwidth(rec_img, kept, kind)[0])
    return float(S.loo_bandwidth(values, kept, kind)[0]), rec


def _resample_inputs(img, rec_img, cov_img, bws: list, kind: str, config) -> dict:
    """What a window needs to rebuild its inputs from a subset of the kept spots: the bandwidths the
    phase's channels were made with (so the rebuilt smoothers mean the same), and a context margin
    beyond which the smoothers' kernels (truncated at 3 sigma) do not reach."""
    scale = max((b for pair in bws for b in pair if b is not None), default=1.0)
    widest = max(config.sigmas) * scale * (2.0 if config.adaptive else 1.0)  # densities: twice the nominal
    sy, sx = S._sigma_px(kind, widest)
    margin = int(np.ceil(3.0 * max(sy, sx))) + 1
    return {
        "nodes": img.nodes,
        "recon": rec_img,
        "cov": cov_img,
        "bandwidths": bws,
        "margin": margin,
        "sigmas": config.sigmas,
        "cross_gene": config.cross_gene,
    }


def _st_sample(
    prob: TrainProblem, rng: np.random.Generator, augment: bool, fold: int = 0, mix: float = 0.0, dropout: float = 0.0
):
    starts = prob.starts[fold]
    valid = [i for i, s in enumerate(starts) if len(s)]
    p = valid[int(rng.integers(len(valid)))]

    def draw():
        return int(rng.integers(prob.genes)) if prob.gene_p is None else int(rng.choice(prob.genes, p=prob.gene_p))

    g = draw()
    y, x = starts[p][int(rng.integers(len(starts[p])))]
    P = prob.patch
    ch = prob.channels[p][g, :, y : y + P, x : x + P]
    tgt = prob.target_of(p)
    tg = tgt[g, y : y + P, x : x + P][None]
    mixed = mix > 0 and prob.genes > 1 and rng.random() < mix
    if mixed:
        # a new "gene": a convex mixture of two genes at the same place. The input channels are
        # linear in the values (or the same for both genes), so the mixture's channels and target
        # stay consistent with each other.
        h, w = draw(), float(rng.random())
        ch = w * ch + (1.0 - w) * prob.channels[p][h, :, y : y + P, x : x + P]
        tg = w * tg + (1.0 - w) * tgt[h, y : y + P, x : x + P][None]
    if prob.counts is not None:
        tg = np.concatenate([tg, count_window(prob, p, g, y, x)])
    lm = prob.loss_mask(p, fold)[y : y + P, x : x + P][None]
    if dropout > 0 and not mixed and prob.resample is not None and rng.random() < 0.5:
        ch, lm = _dropped_window(prob, rng, p, g, y, x, fold, dropout)
    if augment:
        syms = S.symmetries(prob.kind)
        sym = syms[int(rng.integers(len(syms)))]
        ch, tg, lm = (S.apply_symmetry(a, sym) for a in (ch, tg, lm))
    return ch, tg, lm


def _dropped_window(
    prob: TrainProblem, rng: np.random.Generator, p: int, g: int, y: int, x: int, fold: int, rate: float
):
    """Gene ``g``'s inputs in the window at ``(y, x)`` of phase ``p`` rebuilt with a share ``rate`` of
    the kept spots dropped (a different input image at every draw, so that the networks cannot learn
    the slide's few fixed inputs by heart); the dropped spots become targets unless they are in the
    network's own fold."""
    rs = prob.resample
    P, M = prob.patch, rs["margin"]
    h, w = prob.target.shape[1:]
    r0, c0 = max(0, y - M), max(0, x - M)
    r1, c1 = min(h, y + P + M), min(w, x + P + M)
    kept = prob.kept[p][r0:r1, c0:c1]
    drop = kept & (rng.random(kept.shape) < rate)
    bv, br = rs["bandwidths"][p]
    rec, cov = rs["recon"], rs["cov"]
    ch = S.make_channels(
        prob.target[g : g + 1, r0:r1, c0:c1],
        kept & ~drop,
        rs["nodes"][r0:r1, c0:c1],
        prob.kind,
        None if rec is None else rec[g : g + 1, r0:r1, c0:c1],
        rs["cross_gene"],
        rs["sigmas"],
        None if cov is None else cov[:, r0:r1, c0:c1],
        bv is not None,
        False,
        None,
        bv,
        br,
    )[0]
    wy, wx = y - r0, x - c0
    ch = ch[:, wy : wy + P, wx : wx + P]
    extra = drop & (prob.fold_img[r0:r1, c0:c1] != fold)
    lm = prob.loss_mask(p, fold)[y : y + P, x : x + P] | extra[wy : wy + P, wx : wx + P]
    return ch, lm[None]


class NaturalSampler:
    """Natural-image crops laid out on the slide's lattice with the same masks and input channels."""

    def __init__(
        self,
        images: list[np.ndarray],
        kind: str,
        patch: int,
        config,
        n_covariates: int = 0,
        tissue: list[np.ndarray] | None = None,
        tissue_share: float = 0.0,
    ):
        self.kind = kind
        self.patch = patch
        self.config = config
        self.n_cov = n_covariates
        sig = max(config.sigmas)
        sy, sx = S._sigma_px(kind, sig)
        self.margin = int(np.ceil(3 * max(sy, sx)))
        self.images = self._fitting(images)
        #: the slide's own H&E images (:func:`~.natural.tissue_images`), drawn with ``tissue_share``
        self.tissue = [self._pad(im) for im in tissue or []]
        self.tissue_share = float(tissue_share) if self.tissue else 0.0

    def _pad(self, im: np.ndarray) -> np.ndarray:
        need = self.patch + 2 * self.margin
        return np.pad(im, ((0, max(0, need - im.shape[0])), (0, max(0, need - im.shape[1]))), mode="reflect")

    def _fitting(self, images: list[np.ndarray]) -> list[np.ndarray]:
        need = self.patch + 2 * self.margin
        return [im for im in images if min(im.shape) >= need] or [self._pad(im) for im in images]

    def _image(self, rng: np.random.Generator) -> np.ndarray:
        """One image: a tissue image with probability ``tissue_share`` (no draw without them)."""
        if self.tissue_share > 0 and rng.random() < self.tissue_share:
            return self.tissue[int(rng.integers(len(self.tissue)))]
        return self.images[int(rng.integers(len(self.images)))]

    def sample(self, rng: np.random.Generator):
        im = self._image(rng)
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
        ch = S.make_channels(
            crop[None],
            kept,
            nodes,
            self.kind,
            None,
            self.config.cross_gene,
            self.config.sigmas,
            cov,
            self.config.adaptive,
            self.config.base == "prior",
        )[0]
        sl = slice(self.margin, self.margin + self.patch)
        ch = ch[:, sl, sl]
        tg = crop[None, sl, sl]
        lm = (nodes & ~kept)[None, sl, sl]
        syms = S.symmetries(self.kind)
        sym = syms[int(rng.integers(len(syms)))]
        return tuple(S.apply_symmetry(a, sym) for a in (ch, tg, lm))


# ---------------------------------------------------------------------- loss and model
def masked_loss(outs: list[torch.Tensor], target: torch.Tensor, mask: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Deep-supervised loss: cascade ``c`` (1-based) weighted ``c / C``; per-sample masked mean.

    ``kind``: ``"mse"``, ``"l1"``, or ``"poisson"`` / ``"nb"``: ``target`` (B, 6, P, P) is the
    standardised value and the count channels of :func:`count_window`, and a spot's error is its
    count deviance (:func:`attach_counts`); samples without counts (natural images) take the
    squared error.
    """
    n = len(outs)
    total = 0.0
    wsum = 0.0
    m = mask.float()
    denom = m.sum().clamp_min(1.0)
    for c, out in enumerate(outs, start=1):
        if kind in ("poisson", "nb"):
            err = _count_error(out, target)
        else:
            d = out - target
            err = d * d if kind == "mse" else d.abs()
        total = total + (c / n) * (err * m).sum() / denom
        wsum += c / n
    return total / wsum


def _count_error(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, 1, P, P) each spot's count deviance over its gene's null deviance, or the squared error
    where there are no counts (natural samples, no spot)."""
    z, off, size, sd, theta, kap = (target[:, i : i + 1] for i in range(6))
    has = size > 0
    s = torch.where(has, size, torch.ones_like(size))
    c = torch.expm1(z * sd + off).clamp_min(0.0) / s
    v = (out * sd + off).clamp(max=20.0)
    mean = (torch.nn.functional.softplus(torch.expm1(v), beta=50.0) + 1e-4) / s
    d = out - z
    return torch.where(has, count_deviance(c, mean, theta) / kap, d * d)


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
    elif config.base == "prior":
        base = S.channel_index("prior", len(config.sigmas), config.cross_gene)
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


# ---------------------------------------------------------------------- the networks and the loop
@dataclass
class Member:
    """One network of the cross-fitted ensemble: the weights trained, their moving average, the optimiser."""

    fold: int
    model: CDCIN
    opt: torch.optim.Optimizer
    ema: CDCIN | None = None
    steps: int = 0
    last_loss: float | None = None
    #: checkpoint selection: the lowest held-out error seen, the weights and the step it was seen at
    best_error: float = float("inf")
    best_state: dict | None = None
    best_step: int | None = None

    @property
    def evaluated(self) -> CDCIN:
        """The module used for predictions: the weight average when ``ema`` is on."""
        return self.ema if self.ema is not None else self.model


def make_members(n_channels: int, n_folds: int, config, device: torch.device, seed: int) -> list[Member]:
    """One fresh network per fold (seeded: ``seed + fold``)."""
    out = []
    for f in range(n_folds):
        torch.manual_seed(int(seed) + f)
        model = make_model(n_channels, config).to(device).train()
        wd = float(config.weight_decay)
        if wd > 0:  # decoupled weight decay (AdamW): each step shrinks the weights by lr * wd
            opt = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(config.beta1, 0.999), weight_decay=wd)
        else:
            opt = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(config.beta1, 0.999))
        ema = copy.deepcopy(model) if config.ema else None
        out.append(Member(f, model, opt, ema))
    return out


@dataclass
class TrainState:
    """What the loop leaves behind: step counts, losses, and whether it was stopped."""

    steps: int = 0
    seconds: float = 0.0
    last_loss: float | None = None
    stopped: bool = False
    losses: list = field(default_factory=list)
    #: the members being trained while the loop runs (for previews), else ``None``
    live: Any = None
    #: checkpoint selection: rounds of validation and the seconds they took
    validations: int = 0
    validation_s: float = 0.0
    #: shared checkpoint selection: the lowest mean error of the members scored together
    best_shared_error: float = float("inf")


def train_loop(
    members: list[Member],
    prob: TrainProblem,
    config,
    device: torch.device,
    state: TrainState,
    should_stop: Callable[[], bool],
    natural: NaturalSampler | None = None,
    budget_s: float | None = None,
    max_steps: int | None = None,
    rng: np.random.Generator | None = None,
    validate: Callable[[Member], float] | None = None,
    checkpoints: int = 0,
) -> Iterator[ProgressEvent]:
    """Optimise the members in turn (one batch each, round-robin); yields a :class:`ProgressEvent`
    after every step.

    Stops at the time budget, the step limit (steps of all members together) or when
    ``should_stop()`` turns true. The time the consumer holds the loop between two events (e.g. to
    compute a preview) is not charged to the budget.

    Checkpoint selection (``validate`` given, ``checkpoints`` > 0): each time training passes another
    ``1 / checkpoints`` of its budget (time or steps), and when it ends (stopped included), every
    member's evaluated weights are scored by ``validate(member)`` (an error on spots the member never
    trained on); each member ends with the weights of its lowest score. Validation is skipped while
    it has taken more than :data:`VALIDATION_SHARE` of the time so far (the end is always scored).
    """
    rng = rng or np.random.default_rng(config.seed)
    bs = config.batch_size
    n_nat = int(round(bs * config.natural_share)) if natural is not None else 0
    n_st = max(1, bs - n_nat)
    scope = config.checkpoint_scope
    t0 = time.perf_counter()
    paused = 0.0
    step = 0
    state.live = members
    next_check = 1
    share = float(getattr(config, "coarse_share", 0.0)) or float(getattr(config, "hole_share", 0.0))
    coarse = _coarse_choices(prob, max(m.fold for m in members) + 1)
    while True:
        el = time.perf_counter() - t0 - paused
        if should_stop():
            state.stopped = True
            break
        if max_steps is not None and step >= max_steps:
            break
        if budget_s is not None and el >= budget_s:
            break
        mem = members[step % len(members)]
        dropout = float(config.kept_dropout)
        samples = [
            _st_sample(
                _source(prob, coarse[mem.fold], share, rng), rng, config.augment, mem.fold, config.gene_mix, dropout
            )
            for _ in range(n_st)
        ]
        nat = [natural.sample(rng) for _ in range(n_nat)]
        if prob.counts is not None:
            extra = natural_count_channels(prob.patch)
            nat = [(c, np.concatenate([t, extra]), m) for c, t, m in nat]
        samples += nat
        ch = torch.from_numpy(np.stack([s[0] for s in samples])).to(device)
        tg = torch.from_numpy(np.stack([s[1] for s in samples])).to(device)
        lm = torch.from_numpy(np.stack([s[2] for s in samples])).to(device)
        outs = mem.model(ch)
        loss = masked_loss(outs, tg, lm, config.loss)
        mem.opt.zero_grad(set_to_none=True)
        loss.backward()
        lr = config.lr * lr_factor(config.lr_decay, _progress(el, step, budget_s, max_steps))
        for group in mem.opt.param_groups:
            group["lr"] = lr
        mem.opt.step()
        mem.steps += 1
        if mem.ema is not None:
            d = min(float(config.ema), (1.0 + mem.steps) / (10.0 + mem.steps))
            with torch.no_grad():
                for pe, p in zip(mem.ema.parameters(), mem.model.parameters()):
                    pe.mul_(d).add_(p.detach(), alpha=1.0 - d)
        step += 1
        state.steps += 1
        mem.last_loss = state.last_loss = float(loss.detach())
        state.losses.append(state.last_loss)
        el = time.perf_counter() - t0 - paused
        if validate is not None and checkpoints > 0 and step % len(members) == 0:
            prog = _progress(el, step, budget_s, max_steps)
            if prog * checkpoints >= next_check:
                next_check = int(prog * checkpoints) + 1
                if prog < 1.0 and state.validation_s <= VALIDATION_SHARE * el:
                    _validate_members(members, validate, state, scope)
                    el = time.perf_counter() - t0 - paused
        eta = None
        if budget_s is not None:
            eta = max(budget_s - el, 0.0)
        if max_steps is not None:
            e2 = el / step * (max_steps - step)
            eta = e2 if eta is None else min(eta, e2)
        ty = time.perf_counter()
        yield ProgressEvent(
            "train", state.steps, max_steps, state.last_loss, el, eta, f"step {state.steps} loss {state.last_loss:.4f}"
        )
        paused += time.perf_counter() - ty
    if validate is not None and checkpoints > 0 and step > 0:
        _validate_members(members, validate, state, scope)
        for m in members:
            if m.best_state is not None:
                m.evaluated.load_state_dict(m.best_state)
    state.seconds += time.perf_counter() - t0 - paused
    state.live = None


def _source(prob: TrainProblem, coarse: list, share: float, rng: np.random.Generator) -> TrainProblem:
    """Where a slide window comes from: one of ``coarse`` (the slide one level sparser) with
    probability ``share``, else ``prob``. Draws nothing when there is no choice (same stream as
    without the option)."""
    if share <= 0 or not coarse or rng.random() >= share:
        return prob
    return coarse[int(rng.integers(len(coarse)))]


#: Checkpoint validation may take this share of the training time (beyond it, checkpoints are skipped).
VALIDATION_SHARE = 0.1


def _validate_members(
    members: list[Member], validate: Callable[[Member], float], state: TrainState, scope: str = "member"
) -> None:
    """Score every member's evaluated weights; keep a copy of each member's best (``scope="member"``),
    or of every member's weights where the members' mean score is the lowest (``"shared"``: one
    choice among the checkpoints for the whole ensemble, made on all the folds' spots together)."""
    t = time.perf_counter()
    errs = [float(validate(m)) for m in members]
    if scope == "shared":
        fin = [e for e in errs if np.isfinite(e)]
        mean = float(np.mean(fin)) if fin else float("nan")
        keep = np.isfinite(mean) and mean < state.best_shared_error
        if keep:
            state.best_shared_error = mean
        better = [keep] * len(members)
    else:
        better = [np.isfinite(e) and e < m.best_error for m, e in zip(members, errs)]
    for m, err, b in zip(members, errs, better):
        if b:
            m.best_error, m.best_state, m.best_step = err, copy_state(m.evaluated), m.steps
    state.validations += 1
    state.validation_s += time.perf_counter() - t


def _progress(elapsed: float, step: int, budget_s: float | None, max_steps: int | None) -> float:
    """How far training is, in [0, 1]: the larger of the time and the step fractions used."""
    p = 0.0
    if budget_s:
        p = max(p, elapsed / budget_s)
    if max_steps:
        p = max(p, step / max_steps)
    return float(min(max(p, 0.0), 1.0))


def lr_factor(kind: str, progress: float) -> float:
    """The learning rate's multiplier at ``progress`` (0: start, 1: end of the budget).

    ``"none"``: constant; ``"linear"``: down to 0 at the end (the schedule that suits a training
    budget known in advance, Li et al. 2020, "Budgeted training"); ``"cosine"``: half a cosine to 0.
    """
    if kind == "linear":
        return max(1.0 - progress, 0.0)
    if kind == "cosine":
        return 0.5 * (1.0 + float(np.cos(np.pi * progress)))
    return 1.0


def copy_state(model: torch.nn.Module) -> dict:
    """A CPU copy of a module's weights (a checkpoint that later steps do not change)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


__all__ = [
    "Member",
    "NaturalSampler",
    "ProgressEvent",
    "TrainProblem",
    "TrainState",
    "assign_folds",
    "attach_counts",
    "build_problem",
    "copy_state",
    "cross_gene_reconstruction",
    "make_members",
    "make_model",
    "lr_factor",
    "masked_loss",
    "spec_of",
    "standardise",
    "train_loop",
]
