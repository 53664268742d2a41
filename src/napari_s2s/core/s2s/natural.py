"""Natural images for co-learning: scikit-image's bundled images, or a user folder; and the
slide's own H&E laid out on the grid the networks impute (:func:`tissue_images`).

Images are grayscale float32 in [0, 1], downscaled so that their longest side is at most
``max_side`` pixels (natural photographs are much finer than a gene map; a moderate downscale keeps
structure at the scale of a few lattice pitches). Loaders that need a download (``pooch``) are skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SlideError

#: scikit-image images that ship inside its wheel (no network).
BUNDLED = (
    "camera",
    "coins",
    "moon",
    "brick",
    "grass",
    "gravel",
    "clock",
    "page",
    "text",
    "chelsea",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "astronaut",
)

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


def _gray(img: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2gray, rgba2rgb

    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] == 4:
        img = rgba2rgb(img)
    if img.ndim == 3:
        img = rgb2gray(img)
    img = img.astype(np.float32)
    if img.max() > 1.0:
        img = img / 255.0
    return img


def _downscale(img: np.ndarray, max_side: int) -> np.ndarray:
    from skimage.transform import rescale

    side = max(img.shape)
    if side <= max_side:
        return img
    return rescale(img, max_side / side, anti_aliasing=True).astype(np.float32)


def _at_sizes(img: np.ndarray, max_side: int | tuple) -> list[np.ndarray]:
    sizes = (max_side,) if np.isscalar(max_side) else tuple(max_side)
    return [_downscale(img, int(m)) for m in sizes]


def load_natural_images(
    folder: str | None = None, max_side: int | tuple = 160, limit: int | None = None
) -> list[np.ndarray]:
    """Grayscale natural images in [0, 1].

    Parameters
    ----------
    folder
        A folder of image files (png, jpg, tif, bmp); ``None`` for scikit-image's bundled images.
    max_side
        Downscale so that the longest side is at most this; several sizes: every image at each of
        them, in that order per image (structures of one image at several scales per pixel).
    limit
        Keep at most this many images (each at every size).

    Raises
    ------
    SlideError
        When ``folder`` is given but holds no readable image.
    """
    out: list[np.ndarray] = []
    n_sizes = 1 if np.isscalar(max_side) else len(tuple(max_side))
    if folder is not None:
        from skimage.io import imread

        p = Path(folder)
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES) if p.is_dir() else []
        for f in files:
            try:
                out += _at_sizes(_gray(imread(str(f))), max_side)
            except Exception:  # unreadable image files are skipped
                continue
            if limit and len(out) >= limit * n_sizes:
                break
        if not out:
            raise SlideError(folder, "no readable natural images (png, jpg, tif, bmp) in this folder")
        return out
    import skimage.data as data

    for name in BUNDLED:
        try:
            img = getattr(data, name)()
        except Exception:  # loaders needing a download are skipped
            continue
        out += _at_sizes(_gray(img), max_side)
        if limit and len(out) >= limit * n_sizes:
            break
    return out


def tissue_images(
    features, rows: np.ndarray, cols: np.ndarray, steps: tuple = (1.0, 0.5), n_components: int = 3
) -> list[np.ndarray]:
    """The slide's H&E as co-learning images at the pitch the networks impute.

    The networks learn sparser -> sparse on the measured lattice and are applied one level finer,
    where nothing is measured; natural photographs show them structure at every scale. The slide's
    own image shows them *this tissue* at the dense grid's pitch: its H&E features read at every
    dense-grid coordinate (``step`` 1) and at half of it (``step`` 0.5) over the measured spots'
    bounding box, reduced to their first ``n_components`` principal components, one image each,
    laid out in grid index space (so a hexagonal lattice keeps its geometry, as gene windows do).

    Parameters
    ----------
    features
        ``f(R, C) -> (n, F)`` H&E features at dense-grid coordinates (measured spots at
        ``(2 row, 2 col)``), as the engine receives them.
    rows, cols
        The measured spots' lattice coordinates.
    steps
        Grid spacings of the images in dense-grid units.
    n_components
        Principal components of the standardised features kept (each an image).

    Returns
    -------
    list of (h, w) float32 images in [0, 1] (empty when the features carry no variation).
    """
    rows = np.asarray(rows, np.float64)
    cols = np.asarray(cols, np.float64)
    out: list[np.ndarray] = []
    for step in steps:
        r = np.arange(2 * rows.min(), 2 * rows.max() + step / 2, step)
        c = np.arange(2 * cols.min(), 2 * cols.max() + step / 2, step)
        rr, cc = np.meshgrid(r, c, indexing="ij")
        f = np.asarray(features(rr.ravel(), cc.ravel()), np.float64)
        f = f[:, np.all(np.isfinite(f), axis=0)]
        if f.size == 0:
            continue
        sd = f.std(axis=0)
        keep = sd > 1e-9
        if not keep.any():
            continue
        f = (f[:, keep] - f[:, keep].mean(axis=0)) / sd[keep]
        u, s, _ = np.linalg.svd(f, full_matrices=False)
        for k in range(min(n_components, f.shape[1])):
            img = (u[:, k] * s[k]).reshape(rr.shape)
            lo, hi = np.percentile(img, [1, 99])
            if hi - lo <= 1e-9:
                continue
            out.append(np.clip((img - lo) / (hi - lo), 0.0, 1.0).astype(np.float32))
    return out
