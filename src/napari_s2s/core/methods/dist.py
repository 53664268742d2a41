"""``dist``: a DIST-style self-supervised CNN, re-implemented from the paper's description.

DIST (Zhao, Wang, Hu, Brief. Bioinform. 2023) learns "low -> high" on one slide: the measured grid is
downsampled 2x once more, a CNN is trained to recover the measured grid from that sparser one, and
the trained CNN is then applied to the measured grid to predict the next level up. This module
follows the description in ``method.md`` (no code from the authors):

* network: conv 1->64, two residual groups of five 3x3 convs (width 64, ReLU), conv 64->4; the four
  channels are the 2x2 sub-pixel outputs (pixel shuffle) added to the low-resolution input repeated
  into its 2x2 block; one gene image at a time, genes as the batch;
* loss: mean squared error on the positions that hold a measured spot (in tissue);
* Adam, learning rate 1e-3, 200 epochs by default (each epoch one pass over the genes in batches),
  outputs clipped at 0.

Lattices. Both levels are scalings by two of the same lattice (design.md): in *level coordinates*
the measured spots sit at ``(row/2, col/2)``, the sparser ones at a quarter of those (the same
:func:`~napari_s2s.core.data.lattice.measured_mask` applied again), and a level-``k`` cell ``(a, b)`` has
the four children ``(2a + i, 2b + j)``. On hex lattices the raw ``(row, col)`` grid is a
checkerboard; its empty cells (and cells just outside the tissue) are filled, for the network input
only, with the mean of their nearest spots of that level, so the input is a plain image. Cells more
than one level pitch from every spot are 0.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
from scipy.spatial import cKDTree

from ..data.lattice import measured_mask, physical
from .base import ImputationTask, MethodStopped, register


def _level_image(
    a: np.ndarray, b: np.ndarray, values: np.ndarray, origin: tuple[int, int], shape: tuple[int, int], kind: str
) -> np.ndarray:
    """(G, H, W) network input at one level: spot values, gaps filled by their nearest spots.

    Parameters
    ----------
    a, b
        Level coordinates of the spots.
    values
        (n, G) spot values.
    origin
        Level coordinates of image index (0, 0).
    shape
        (H, W) of the image.
    kind
        Lattice kind (for physical distances).
    """
    h, w = shape
    ii, jj = np.mgrid[0:h, 0:w]
    ca = ii.ravel() + origin[0]
    cb = jj.ravel() + origin[1]
    src = physical(a, b, kind)
    tree = cKDTree(src)
    k = min(6, len(a))
    dist, idx = tree.query(physical(ca, cb, kind), k=k)
    dist = dist.reshape(len(ca), k)
    idx = idx.reshape(len(ca), k)
    near = dist <= dist[:, :1] * 1.001 + 1e-9
    vals = np.asarray(values, dtype=np.float64)
    filled = (vals[idx] * near[..., None]).sum(1) / near.sum(1, keepdims=True)
    filled[dist[:, 0] > 1.0 + 1e-6] = 0.0
    return filled.T.reshape(vals.shape[1], h, w).astype(np.float32)


def _build_net(width: int = 64, blocks: int = 5):
    import torch
    from torch import nn

    class Group(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers = []
            for i in range(blocks):
                layers.append(nn.Conv2d(width, width, 3, padding=1))
                if i < blocks - 1:
                    layers.append(nn.ReLU(inplace=True))
            self.body = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.body(x)

    class DistNet(nn.Module):
        """conv 1->w, 2 residual groups, conv w->4, pixel shuffle, plus the nearest-upsampled input."""

        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Conv2d(1, width, 3, padding=1)
            self.groups = nn.Sequential(Group(), Group())
            self.tail = nn.Conv2d(width, 4, 3, padding=1)
            self.shuffle = nn.PixelShuffle(2)

        def forward(self, x):
            f = torch.relu(self.head(x))
            f = self.groups(f)
            up = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
            return self.shuffle(self.tail(f)) + up

    return DistNet()


@register("dist")
class Dist:
    """DIST-style CNN trained on the slide's own measured spots (see the module notes).

    Parameters
    ----------
    epochs
        Training epochs (one pass over the genes each) when the task has no budget, and the
        maximum otherwise.
    batch
        Genes per optimisation step.
    lr
        Adam learning rate.
    threads
        ``torch.set_num_threads`` while training (restored afterwards); ``None``: half the CPU
        cores, at most 4 (oversubscribed cores make small convolutions very slow).
    width
        Feature width of the CNN.

    Notes
    -----
    ``task.budget_s`` caps the training wall-clock time: training stops after the epoch that
    crosses it. With a fixed seed, a fixed number of epochs and the same thread count, the
    result is reproducible; a time cap that stops training early makes it machine-dependent.
    """

    name = "dist"

    def __init__(
        self, epochs: int = 200, batch: int = 8, lr: float = 1e-3, threads: int | None = None, width: int = 64
    ) -> None:
        self.epochs = int(epochs)
        self.batch = int(batch)
        self.lr = float(lr)
        self.threads = threads
        self.width = int(width)
        self.details_: dict = {}
        self.stop_requested = threading.Event()

    def stop(self) -> None:
        """End a running :meth:`predict` after the current batch (it raises ``MethodStopped``)."""
        self.stop_requested.set()

    def predict(self, task: ImputationTask) -> np.ndarray:
        import torch

        kind = task.kind
        rows = np.asarray(task.measured_rows, dtype=np.int64)
        cols = np.asarray(task.measured_cols, dtype=np.int64)
        if np.any(rows % 2) or np.any(cols % 2):
            raise ValueError("dist needs measured spots on the 1/4 lattice (even rows and columns)")
        vals = np.asarray(task.measured_values, dtype=np.float32)
        n_genes = vals.shape[1]
        # measured level coordinates, and the sparser level inside them
        a, b = rows // 2, cols // 2
        sparser = measured_mask(a, b, kind)
        if sparser.sum() < 2:
            raise ValueError("dist: too few spots on the sparser lattice to train")
        # training pair: sparser (p, q) -> measured (a, b); one origin so that children align
        p0, q0 = int(np.floor(a.min() / 2)), int(np.floor(b.min() / 2))
        p1, q1 = int(a.max() // 2), int(b.max() // 2)
        low_shape = (p1 - p0 + 1, q1 - q0 + 1)
        low = _level_image(a[sparser] // 2, b[sparser] // 2, vals[sparser], (p0, q0), low_shape, kind)
        high = np.zeros((n_genes, 2 * low_shape[0], 2 * low_shape[1]), np.float32)
        mask = np.zeros(high.shape[1:], np.float32)
        high[:, a - 2 * p0, b - 2 * q0] = vals.T
        mask[a - 2 * p0, b - 2 * q0] = 1.0
        # inference input: the measured level, covering every target's parent cell
        tr = np.asarray(task.target_rows, dtype=np.int64)
        tc = np.asarray(task.target_cols, dtype=np.int64)
        all_r = np.concatenate([rows, tr])
        all_c = np.concatenate([cols, tc])
        a0, b0 = int(all_r.min() // 2), int(all_c.min() // 2)
        a1, b1 = int(all_r.max() // 2), int(all_c.max() // 2)
        meas_img = _level_image(a, b, vals, (a0, b0), (a1 - a0 + 1, b1 - b0 + 1), kind)

        old_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads or max(1, min(4, (os.cpu_count() or 2) // 2)))
        try:
            out, epochs_run, secs = self._train_and_apply(task, low, high, mask, meas_img)
        finally:
            torch.set_num_threads(old_threads)
        self.details_ = {"epochs": epochs_run, "train_seconds": round(secs, 2), "train_spots": int(sparser.sum())}
        return np.asarray(out[:, tr - 2 * a0, tc - 2 * b0].T, dtype=np.float64)

    def _train_and_apply(self, task, low, high, mask, meas_img):
        import torch

        gen = torch.Generator().manual_seed(int(task.seed))
        torch.manual_seed(int(task.seed))
        net = _build_net(self.width)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        x = torch.from_numpy(low)[:, None]
        y = torch.from_numpy(high)[:, None]
        m = torch.from_numpy(mask)[None, None]
        n = x.shape[0]
        bs = max(1, min(self.batch, n))
        t0 = time.perf_counter()
        epochs_run = 0
        net.train()
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=gen)
            for s in range(0, n, bs):
                if self.stop_requested.is_set():
                    raise MethodStopped("stopped")
                sel = order[s : s + bs]
                pred = net(x[sel])
                loss = (((pred - y[sel]) ** 2) * m).sum() / (m.sum() * len(sel))
                opt.zero_grad()
                loss.backward()
                opt.step()
            epochs_run += 1
            if task.budget_s is not None and time.perf_counter() - t0 >= task.budget_s:
                break
        secs = time.perf_counter() - t0
        net.eval()
        with torch.no_grad():
            out = net(torch.from_numpy(meas_img)[:, None])[:, 0].clamp_min(0).numpy()
        return out, epochs_run, secs
