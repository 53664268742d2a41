"""Natural images for co-learning: scikit-image's bundled images, or a user folder.

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
