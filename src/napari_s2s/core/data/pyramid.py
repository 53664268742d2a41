"""Images of today's platforms at a size a viewer and the histology features can hold.

Xenium morphology images and SpatialData images are pyramids whose full resolution is tens of
thousands of pixels across. A slide keeps one level: the largest whose longer side is at most
:data:`MAX_IMAGE_SIDE` pixels (a Visium ``hires`` image is 2,000-6,000), with its scale factor
(image pixels per full-resolution pixel), as Space Ranger's ``tissue_hires_scalef``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

#: Longest side, in pixels, of the image level a slide keeps.
MAX_IMAGE_SIDE = 4096


def pick_level(shapes: list[tuple[int, int]], max_side: int | None = None) -> int:
    """Index of the largest ``(height, width)`` whose longer side is at most ``max_side`` (default
    :data:`MAX_IMAGE_SIDE`), else the smallest."""
    max_side = MAX_IMAGE_SIDE if max_side is None else max_side
    fits = [i for i, s in enumerate(shapes) if max(s) <= max_side]
    if fits:
        return max(fits, key=lambda i: shapes[i][0] * shapes[i][1])
    return min(range(len(shapes)), key=lambda i: shapes[i][0] * shapes[i][1])


def to_rgb_uint8(img: np.ndarray, channel_axis: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 from an RGB image (kept as is) or a fluorescence image (its first channel,
    DAPI on Xenium, stretched between its 0.5 and 99.5 percentiles, in grey)."""
    a = np.asarray(img)
    if channel_axis is not None and a.ndim == 3:
        a = np.moveaxis(a, channel_axis, -1)
    if a.ndim == 3 and a.shape[-1] in (3, 4) and a.dtype == np.uint8:
        return np.ascontiguousarray(a[..., :3])
    if a.ndim == 3 and a.shape[-1] == 3:  # RGB in another type
        rgb = np.nan_to_num(a.astype(np.float32))
        hi = float(rgb.max()) if rgb.size else 1.0
        rgb = rgb * (255.0 if hi <= 1.0 else 255.0 / hi)
        return np.clip(rgb, 0, 255).astype(np.uint8)
    if a.ndim == 3:
        a = a[..., 0]
    f = a.astype(np.float32)
    finite = f[np.isfinite(f)]
    if finite.size == 0:
        g = np.zeros(f.shape, np.uint8)
    else:
        lo, hi = np.percentile(finite, [0.5, 99.5])
        hi = hi if hi > lo else lo + 1.0
        g = (np.clip((np.nan_to_num(f) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1)


def read_ome_tiff_level(path: Path, max_side: int | None = None) -> tuple[np.ndarray, float] | None:
    """A pyramid level of an (OME-)TIFF as RGB uint8 and its scale (level pixels per level-0 pixel).

    ``None`` (with a warning naming the file) when the file cannot be decoded, e.g. JPEG-2000
    tiles without the ``imagecodecs`` package: the slide opens without its image then.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes.upper()
            levels = list(getattr(series, "levels", None) or [series])
            yi, xi = axes.index("Y"), axes.index("X")
            shapes = [(int(lv.shape[yi]), int(lv.shape[xi])) for lv in levels]
            k = pick_level(shapes, max_side)
            arr = levels[k].asarray()
    except Exception as exc:  # tifffile raises many types; a missing codec is a ValueError
        hint = " (install imagecodecs: pip install imagecodecs)" if "imagecodecs" in str(exc) else ""
        warnings.warn(f"{path}: image not read ({_first_line(exc)}){hint}; going on without it", stacklevel=2)
        return None
    # keep Y, X and the channel axis (first z plane, first time point)
    index, kept = [], []
    for ax in axes:
        if ax in ("Y", "X") or (ax in ("C", "S") and not any(a in ("C", "S") for a in kept)):
            index.append(slice(None))
            kept.append(ax)
        else:
            index.append(0)
    arr = arr[tuple(index)]
    channel_axis = next((i for i, ax in enumerate(kept) if ax in ("C", "S")), None)
    return to_rgb_uint8(arr, channel_axis=channel_axis), shapes[k][1] / shapes[0][1]


def _first_line(exc: Exception) -> str:
    msg = str(exc).strip()
    return (msg.splitlines()[0] if msg else type(exc).__name__)[:160]
