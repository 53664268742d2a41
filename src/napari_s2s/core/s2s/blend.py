"""How much of the networks to trust: out-of-fold predictions and the blend with the base predictor.

The engine's result is ``base + alpha * (networks - base)`` with ``alpha`` in ``[0, 1]``: ``alpha = 0``
is the base predictor itself (the best non-learned predictor of the slide,
:class:`~napari_s2s.core.smoothing.base.BasePredictor`), ``alpha = 1`` the networks alone. ``alpha``
is chosen on predictions that no network trained on:

* each network of the cross-fitted ensemble (:mod:`.train`) predicts the measured spots of its own
  fold, which were never its targets, in the sparser -> sparse setting it was trained in (for each
  phase of the keep-1/4 sub-lattice where the spot is not kept, from the kept spots);
* the base predictor predicts the same spots from the same kept spots (its kriging conditioned on
  that sub-lattice, its denoising and H&E coefficients kept);
* the weight that minimises the squared error of the blend over all those predictions (each gene
  divided by its variance, so that every gene weighs the same), in closed form, is lowered by
  ``blend_margin`` of its standard errors (cluster-robust over spots), then clipped to ``[0, 1]``:
  a lower confidence bound. The gain the networks show one lattice level up does not always carry
  to the dense level (on small, low-count slides it often does not:
  ``benchmarks/results/blend_margin.md``); a weight the held-out spots barely support is not worth
  the risk, and the fewer the spots, the wider the margin.

This is the sparser -> sparse step S2S learns from, one level below the dense grid: the same
geometry (targets one lattice step from the kept spots) that the networks meet when they impute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .impute import predict_image
from .train import Member, TrainProblem


@dataclass
class OutOfFold:
    """Out-of-fold predictions at measured spots: one row per (spot, phase) pair.

    Attributes
    ----------
    spots
        (n,) index of the measured spot.
    phases
        (n,) phase (coset kept as input) of the prediction.
    network
        (n, G) the prediction of the spot's own fold network (standardised units of the problem).
    """

    spots: np.ndarray
    phases: np.ndarray
    network: np.ndarray


#: Pixels the out-of-fold predictions may cost (networks x phases x genes x image pixels); beyond,
#: a seeded subset of the genes is predicted (one shared weight needs far fewer than all of them).
OOF_PIXELS = 4_000_000
#: Genes the out-of-fold predictions keep at least; on images so large that even these, in every
#: phase, cost more than :data:`OOF_PIXELS`, each network predicts in fewer phases instead.
OOF_MIN_GENES = 4


def oof_phase_count(prob: TrainProblem, n_members: int) -> int:
    """Phases in which each network of an ensemble of ``n_members`` predicts its fold's spots: all of
    them, or on a very large image (a Visium HD slide: every network pass covers the whole slide) as
    many as :data:`OOF_PIXELS` allows with :data:`OOF_MIN_GENES` genes, at least one. The spots stay
    all of them: a network's fold is spread over the slide, and the networks take turns over the
    phases (:func:`member_phases`), so the rows still come from every phase."""
    n_ph = len(prob.channels)
    per_phase = n_members * OOF_MIN_GENES * prob.target.shape[1] * prob.target.shape[2]
    return int(min(n_ph, max(1, OOF_PIXELS // max(per_phase, 1))))


def member_phases(prob: TrainProblem, fold: int, count: int | None = None) -> list[int]:
    """The phases in which the network of ``fold`` predicts its spots: all, or ``count`` of them
    starting from phase ``fold`` (the same ones at every checkpoint, so that its scores compare)."""
    n_ph = len(prob.channels)
    if count is None or count >= n_ph:
        return list(range(n_ph))
    return [(int(fold) + j) % n_ph for j in range(max(1, int(count)))]


def oof_genes(prob: TrainProblem, n_members: int, seed: int = 0) -> np.ndarray:
    """Indices of the genes whose out-of-fold predictions are computed (all the predicted genes, or a
    seeded subset; auxiliary training genes never), with each network in
    :func:`oof_phase_count` phases."""
    per_gene = n_members * oof_phase_count(prob, n_members) * prob.target.shape[1] * prob.target.shape[2]
    cap = max(OOF_MIN_GENES, OOF_PIXELS // max(per_gene, 1))
    if prob.n_targets <= cap:
        return np.arange(prob.n_targets)
    return np.sort(np.random.default_rng(seed).choice(prob.n_targets, cap, replace=False))


def network_oof(
    members: list[Member],
    prob: TrainProblem,
    device: torch.device,
    tile: int = 128,
    genes: np.ndarray | None = None,
    n_phases: int | None = None,
    among: np.ndarray | None = None,
) -> OutOfFold:
    """Each network's predictions at its own fold's spots, in every phase where they are not kept
    (for the genes ``genes``, default all; ``network`` has one column per gene asked for), or in
    ``n_phases`` phases of each network (:func:`member_phases`; default all); ``among`` (a boolean
    mask over the measured spots) keeps only those spots of each fold."""
    spots, phases, preds = [], [], []
    pix = prob.spot_pixels
    genes = np.arange(prob.n_targets) if genes is None else np.asarray(genes)
    for mem in members:
        mine = prob.folds == mem.fold
        mine = np.flatnonzero(mine if among is None else mine & among)
        if not mine.size:
            continue
        model = mem.evaluated
        was = model.training
        for p in member_phases(prob, mem.fold, n_phases):
            ch = prob.channels[p]
            idx = mine[~prob.kept[p][pix[mine, 0], pix[mine, 1]]]
            if not idx.size:
                continue
            out = predict_image(model, ch[genes], device, tile)  # (G', H, W)
            spots.append(idx)
            phases.append(np.full(idx.size, p))
            preds.append(out[:, pix[idx, 0], pix[idx, 1]].T)
        model.train(was)
    if not spots:
        g = len(genes)
        return OutOfFold(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, g), np.float32))
    return OutOfFold(np.concatenate(spots), np.concatenate(phases), np.concatenate(preds).astype(np.float32))


def fold_error(
    member: Member,
    prob: TrainProblem,
    device: torch.device,
    tile: int = 128,
    genes: np.ndarray | None = None,
    n_phases: int | None = None,
    among: np.ndarray | None = None,
) -> float:
    """Mean squared error (standardised units) of ``member``'s predictions at its own fold's spots,
    which it never trained on (:func:`network_oof`, with its ``genes``, ``n_phases`` and ``among``);
    ``nan`` when it has none. The score of checkpoint selection
    (:func:`~napari_s2s.core.s2s.train.train_loop`)."""
    oof = network_oof([member], prob, device, tile, genes, n_phases, among)
    if not len(oof.spots):
        return float("nan")
    genes = np.arange(prob.n_targets) if genes is None else np.asarray(genes)
    pix = prob.spot_pixels[oof.spots]
    truth = np.empty(oof.network.shape, np.float32)
    for p in np.unique(oof.phases):
        sel = oof.phases == p
        truth[sel] = prob.target_of(int(p))[genes][:, pix[sel, 0], pix[sel, 1]].T
    return float(np.mean((oof.network.astype(np.float64) - truth) ** 2))


def split_halves(folds: np.ndarray, seed: int) -> np.ndarray:
    """A seeded boolean mask over the measured spots holding half of each fold's spots (the other
    half: ``~mask``), for scoring checkpoints on one half and weighing the networks on the other."""
    rng = np.random.default_rng([int(seed), 0x5EED])
    mask = np.zeros(len(folds), bool)
    for f in np.unique(folds):
        idx = rng.permutation(np.flatnonzero(folds == f))
        mask[idx[: (len(idx) + 1) // 2]] = True
    return mask


def kept_sources(prob: TrainProblem, phase: int) -> np.ndarray:
    """Indices of the measured spots kept as input in ``phase``."""
    pix = prob.spot_pixels
    return np.flatnonzero(prob.kept[phase][pix[:, 0], pix[:, 1]])


def weight_estimate(
    truth: np.ndarray,
    base: np.ndarray,
    network: np.ndarray,
    gene_weights: np.ndarray,
    clusters: np.ndarray | None = None,
) -> tuple[float, float]:
    """Least-squares weight ``a`` minimising ``sum_g w_g sum_i (truth - base - a (network - base))^2``
    (not clipped) and its standard error, with the rows grouped by ``clusters`` (e.g. the spot of each
    row: a spot's predictions in several phases are not independent; ``None``: every row its own).

    The standard error is the cluster-robust (sandwich) one, ``sqrt(sum_c u_c^2) / sum d^2`` with
    ``u_c`` the sum over the cluster's rows of ``d (r - a d)``. Returns ``(0, 0)`` when the networks
    and the base agree everywhere (nothing to choose).
    """
    sw = np.sqrt(np.asarray(gene_weights, np.float64))[None, :]
    d = (np.asarray(network, np.float64) - base) * sw
    r = (np.asarray(truth, np.float64) - base) * sw
    den = float((d * d).sum())
    if den <= 1e-12:
        return 0.0, 0.0
    a = float((d * r).sum() / den)
    u = (d * (r - a * d)).sum(1)
    if clusters is not None:
        _, inv = np.unique(np.asarray(clusters), return_inverse=True)
        u = np.bincount(inv, weights=u)
    return a, float(np.sqrt((u * u).sum()) / den)


def blend_weight(
    truth: np.ndarray,
    base: np.ndarray,
    network: np.ndarray,
    gene_weights: np.ndarray,
    clusters: np.ndarray | None = None,
    margin: float = 0.0,
) -> float:
    """``alpha`` in ``[0, 1]``: the least-squares weight of :func:`weight_estimate` lowered by
    ``margin`` standard errors (a lower confidence bound: the networks get the weight the held-out
    predictions support, not more), clipped to ``[0, 1]``.
    """
    return lower_bound(*weight_estimate(truth, base, network, gene_weights, clusters), margin)


def lower_bound(weight: float, se: float, margin: float) -> float:
    """``weight - margin * se`` clipped to ``[0, 1]``: the blend weight from :func:`weight_estimate`."""
    return float(np.clip(weight - margin * se, 0.0, 1.0))


def weighted_mse(truth: np.ndarray, pred: np.ndarray, gene_weights: np.ndarray) -> float:
    """Mean over spots and genes of the squared error, each gene divided by its variance."""
    if not len(truth):
        return float("nan")
    e = (np.asarray(pred, np.float64) - truth) ** 2
    return float((e * gene_weights[None, :]).mean())
