"""Imputation: the x2 dense grid, sliding-window inference, final data consistency.

Coordinates: the measured spots' lattice coordinates ``(row, col)`` sit at ``(2 row, 2 col)`` on the
dense grid (the keep-1/4 sub-lattice of the dense lattice, the same geometric step the network learnt at
the sparser level). Dense positions of a slide: square ``(2 row + dr, 2 col + dc)``, ``dr, dc`` in
``{-1, 0, 1}``; hex every node ``(R, C)`` with ``R + C`` even within one dense pitch of a measured spot
(the spot and its six neighbours), so the output covers the tissue symmetrically.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..data.lattice import dense_positions  # noqa: F401  (re-exported)
from . import sampling as S
from .model import CDCIN

#: Pixels per forward pass of :func:`predict_image` on a GPU (bounds the activations' memory: ~0.3 GB
#: with the fast preset's 64 concatenated channels in float32).
BATCH_PIXELS = 1 << 20
#: The same on a CPU, where small passes keep the dense blocks' concatenated activations in the
#: caches: on the Visium slide (30 genes, 153 x 202 pixels, one thread) one network took 2.6 s in
#: passes of one gene and 7.9 s in one pass of 30 (``benchmarks/final_maps_speed.py``); a 814 x 814
#: dense grid of 10 genes 52 s instead of 74 s per network with 512 x 512 tiles of one gene.
CPU_BATCH_PIXELS = 1 << 16


def dense_channels(
    rows: np.ndarray,
    cols: np.ndarray,
    kind: str,
    z: np.ndarray,
    config,
    target_rows: np.ndarray,
    target_cols: np.ndarray,
    recon: np.ndarray | None = None,
    covariates: Callable | None = None,
    prior: Callable | None = None,
    bandwidth_ref: np.ndarray | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Network input on the dense grid covering the measured spots and the targets.

    ``prior(R, C) -> (n, G)``: the base predictor's standardised prediction at dense-grid
    coordinates from every measured spot (needed when ``config.base == "prior"``).
    ``bandwidth_ref`` (m, N): reference genes setting the smoothers' bandwidth, as in
    :func:`~napari_s2s.core.s2s.train.build_problem`.
    Returns (G, Cin, H, W) channels and the dense ``(R, C)`` of pixel ``(0, 0)``.
    """
    R = 2 * np.asarray(rows, dtype=np.int64)
    C = 2 * np.asarray(cols, dtype=np.int64)
    tr = np.asarray(target_rows, dtype=np.int64)
    tc = np.asarray(target_cols, dtype=np.int64)
    r0 = int(min(R.min(), tr.min() if tr.size else R.min())) - 2
    c0 = int(min(C.min(), tc.min() if tc.size else C.min())) - 2
    r1 = int(max(R.max(), tr.max() if tr.size else R.max())) + 2
    c1 = int(max(C.max(), tc.max() if tc.size else C.max())) + 2
    if (r0 + c0) % 2:
        c0 -= 1
    h, w = r1 - r0 + 1, c1 - c0 + 1
    g = z.shape[1]
    vals = np.zeros((g, h, w), np.float32)
    vals[:, R - r0, C - c0] = z.T
    kept = np.zeros((h, w), bool)
    kept[R - r0, C - c0] = True
    parity = int((R[0] + C[0]) % 2) if kind == "hex" else 0
    nodes = S.node_mask((h, w), (r0, c0), kind, parity)
    rec = None
    if config.cross_gene and recon is not None:
        rec = np.zeros((g, h, w), np.float32)
        rec[:, R - r0, C - c0] = recon.T
    cov = None
    if covariates is not None:
        rr, cc = np.nonzero(nodes)
        f = np.asarray(covariates(rr + r0, cc + c0), dtype=np.float32)
        cov = np.zeros((f.shape[1], h, w), np.float32)
        cov[:, rr, cc] = f.T
    use_prior = config.base == "prior"
    pr = None
    if use_prior:
        if prior is None:
            raise ValueError("base 'prior' needs the base predictor's prior function")
        rr, cc = np.nonzero(nodes)
        pr = np.zeros((g, h, w), np.float32)
        pr[:, rr, cc] = np.asarray(prior(rr + r0, cc + c0), np.float32).T
    bw = None
    if bandwidth_ref is not None and config.adaptive:
        ref = np.zeros((bandwidth_ref.shape[1], h, w), np.float32)
        ref[:, R - r0, C - c0] = np.asarray(bandwidth_ref, np.float32).T
        bw = S.level_bandwidth(ref, kept, kind)
    ch = S.make_channels(
        vals, kept, nodes, kind, rec, config.cross_gene, config.sigmas, cov, config.adaptive, use_prior, pr, bw
    )
    return ch, (r0, c0)


def predict_tta(
    model: CDCIN, channels: np.ndarray, kind: str, device: torch.device, tile: int = 128, tta: bool = True
) -> np.ndarray:
    """:func:`predict_image` averaged over the lattice-keeping symmetries (test-time augmentation).

    Each transform maps the lattice and the measured sub-lattice onto themselves (see
    :func:`napari_s2s.core.s2s.sampling.symmetries`), so every transformed input is a valid input of the
    same problem; the predictions are transformed back and averaged.
    """
    if not tta:
        return predict_image(model, channels, device, tile)
    out = None
    syms = S.symmetries(kind)
    for sym in syms:
        pred = predict_image(model, S.apply_symmetry(channels, sym), device, tile)
        back = _invert(pred, sym)
        out = back if out is None else out + back
    return (out / len(syms)).astype(np.float32)


def predict_symmetry(
    model: CDCIN, channels: np.ndarray, sym: tuple[int, bool, bool], device: torch.device, tile: int = 128
) -> np.ndarray:
    """:func:`predict_image` of the input transformed by one lattice symmetry, transformed back."""
    if sym == (0, False, False):
        return predict_image(model, channels, device, tile)
    return _invert(predict_image(model, S.apply_symmetry(channels, sym), device, tile), sym)


def _invert(arr: np.ndarray, sym: tuple[int, bool, bool]) -> np.ndarray:
    k, fr, fc = sym
    out = arr
    if fc:
        out = out[..., :, ::-1]
    if fr:
        out = out[..., ::-1, :]
    if k:
        out = np.rot90(out, -k, axes=(-2, -1))
    return np.ascontiguousarray(out)


def predict_image(
    model: CDCIN, channels: np.ndarray, device: torch.device, tile: int = 128, batch: int | None = None
) -> np.ndarray:
    """Last-cascade prediction (G, H, W) over a whole image by overlapping tiles.

    Tiles are ``tile x tile``; each keeps the part of its prediction at least ``tile // 8`` pixels
    from its inner edges (the network's context there is the image's, not the tile's zero padding),
    so consecutive tiles overlap by a quarter of a tile and every pixel is computed about 1.8 times
    (instead of 4 with half-tile strides). Images no larger than a tile go in one piece. ``batch``
    genes go through the network at once (default: about :data:`BATCH_PIXELS` pixels, on a CPU
    :data:`CPU_BATCH_PIXELS`).
    """
    # the weights move and change layout outside inference mode: inside it, ``Module.to`` would make
    # them inference tensors, which a network still in training (no weight average) cannot train on
    was_training = model.training
    model.to(device).eval()
    # channels-last convolutions are ~1.3x faster on CPUs (oneDNN's native layout); the weights go back after
    fmt = torch.channels_last if torch.device(device).type == "cpu" else torch.contiguous_format
    model.to(memory_format=fmt)
    try:
        with torch.inference_mode():
            return _predict_tiles(model, channels, device, tile, batch, fmt)
    finally:
        model.to(memory_format=torch.contiguous_format)
        model.train(was_training)


def _predict_tiles(model, channels, device, tile, batch, fmt) -> np.ndarray:
    g, _, h, w = channels.shape
    if batch is None:
        per_pass = CPU_BATCH_PIXELS if torch.device(device).type == "cpu" else BATCH_PIXELS
        batch = max(1, per_pass // (min(h, tile) * min(w, tile)))

    def run(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(x)).to(device).contiguous(memory_format=fmt)
        return model(t)[-1][:, 0].cpu().numpy()

    if h <= tile and w <= tile:
        out = np.zeros((g, h, w), np.float32)
        for i in range(0, g, batch):
            out[i : i + batch] = run(channels[i : i + batch])
        return out
    th, tw = min(tile, h), min(tile, w)
    halo = max(tile // 8, 0)
    out = np.zeros((g, h, w), np.float32)
    for y, (ya, yb) in _tile_spans(h, th, halo):
        for x, (xa, xb) in _tile_spans(w, tw, halo):
            for i in range(0, g, batch):
                pred = run(channels[i : i + batch, :, y : y + th, x : x + tw])
                out[i : i + batch, ya:yb, xa:xb] = pred[:, ya - y : yb - y, xa - x : xb - x]
    return out


def _tile_spans(n: int, t: int, halo: int) -> list[tuple[int, tuple[int, int]]]:
    """Tile starts along an axis of length ``n`` (tiles of ``t``) and the span ``[a, b)`` each one
    writes: its pixels at least ``halo`` from an inner edge. Spans cover ``[0, n)``."""
    if n <= t:
        return [(0, (0, n))]
    core = max(t - 2 * halo, 1)
    starts = sorted(set(list(range(0, n - t, core)) + [n - t]))
    return [(s, (0 if s == 0 else s + halo, n if s + t >= n else s + t - halo)) for s in starts]


def final_consistency(
    pred: np.ndarray,
    target_rows: np.ndarray,
    target_cols: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Put the measured values back exactly where a target is a measured spot ``(2 row, 2 col)``.

    Returns the corrected (t, G) predictions and the bool "measured" flag per target.
    """
    key = {(int(r), int(c)): i for i, (r, c) in enumerate(zip(2 * np.asarray(rows), 2 * np.asarray(cols)))}
    idx = np.array([key.get((int(r), int(c)), -1) for r, c in zip(target_rows, target_cols)], dtype=np.int64)
    measured = idx >= 0
    out = np.array(pred, dtype=np.float32, copy=True)
    out[measured] = np.asarray(values, dtype=np.float32)[idx[measured]]
    return out, measured
