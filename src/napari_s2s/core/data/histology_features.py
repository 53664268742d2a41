"""Per-spot H&E features: what the histology image says about each lattice position.

A histology-guided method needs, for every measured spot and every position it predicts, a short
vector describing the tissue under that position. This module computes it from the slide's image
over the spot's footprint:

* **stain** -- mean and spread of the haematoxylin, eosin and DAB channels from colour
  deconvolution (:func:`skimage.color.rgb2hed`);
* **colour** -- mean and spread of R, G, B and grey;
* **texture** -- mean gradient magnitude, fine-detail energy (grey minus its 1-pixel blur), the
  fraction of tissue pixels (grey below the image's Otsu threshold) and of nuclear pixels
  (haematoxylin above the Otsu threshold of the tissue's haematoxylin);
* **clusters** (optional, learned on the slide's own image) -- the fraction of the footprint's
  pixels in each of ``k`` colour/texture clusters found by k-means on the image's tissue pixels;
* **encoder** (optional, ``features="encoder:/path/model.pt"``) -- the output of a pretrained
  histology encoder given as a local TorchScript file, on the footprint's square patch resized to
  the encoder's input size (TorchScript or ``torch.export`` ``.pt2``; nothing is downloaded).

Geometry. A position given by array coordinates ``(row, col)`` sits at full-resolution pixel
``grid_to_px @ [row, col, 1]`` and, in image ``name``, at that times ``scalefactors[name]``. The
footprint is a Gaussian window with the second moment of the spot's disk (``sigma = radius / 2``),
cut at one radius, so that it stays inside the spot. The radius is half ``spot_diameter_px``, or
0.3 pitch when the diameter is unknown (the ratio of Visium and ST arrays).

Speed. Every per-pixel channel is filtered once over the whole image (separable Gaussian), the
filtered maps are kept at a stride of about a quarter of the footprint, and positions are read from
them by bilinear interpolation. Any set of positions (measured spots, hidden spots, the dense x2
grid at half-integer coordinates) then costs one interpolation; the maps are cached per image and
footprint, so a whole Visium slide takes well under a second after the first call.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .lattice import apply_affine, pitch_of_affine

#: Feature sets understood by :func:`histology_features`.
FEATURE_SETS = ("basic", "clusters", "all")

#: Prefix of the encoder feature set: ``"encoder:/path/to/model.pt"`` (a TorchScript file).
ENCODER_PREFIX = "encoder:"

#: Footprint radius (working-image pixels) above which the image is first shrunk by block means.
MAX_RADIUS_PX = 24.0

#: Default minimum footprint diameter, in pixels of the best image, for :func:`histology_available`.
MIN_PX_PER_SPOT = 4.0

#: Diameter / pitch used when the spot diameter is unknown (Visium 0.55-0.65, ST 0.5).
DIAMETER_PER_PITCH = 0.6

#: Number of k-means pixel clusters of the ``clusters`` feature set.
N_CLUSTERS = 8

_MEAN_CHANNELS = ("R", "G", "B", "grey", "H", "E", "D", "gradient", "detail", "tissue", "nuclear")
_SPREAD_CHANNELS = ("R", "G", "B", "grey", "H", "E")

_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 6


@dataclass(frozen=True)
class HistologyView:
    """What a histology-guided method may see of the slide: the images and where spots sit in them.

    Attributes
    ----------
    images
        Image name -> (H, W, 3) uint8.
    scalefactors
        Image name -> factor from full-resolution pixels to that image's pixels.
    grid_to_px
        (2, 3) affine ``[row, col, 1] -> [x, y]`` in full-resolution pixels.
    spot_diameter_px
        Spot diameter in full-resolution pixels, if known.
    """

    images: dict
    scalefactors: dict
    grid_to_px: np.ndarray
    spot_diameter_px: float | None = None


def histology_view(slide) -> HistologyView | None:
    """What histology-guided methods may see of a :class:`~napari_s2s.core.data.slide.Slide`.

    ``None`` when the slide has no image or no pixel positions (no grid -> pixel affine). The images
    are read-only views shared by every method: nobody may paint on them.
    """
    g = slide.geometry
    if not slide.images or slide.pixel_xy is None or g is None or g.grid_to_px is None:
        return None
    images = {}
    for k, v in slide.images.items():
        img = np.asarray(v).view()
        img.flags.writeable = False
        images[k] = img
    return HistologyView(
        images=images,
        scalefactors=dict(slide.scalefactors),
        grid_to_px=np.array(g.grid_to_px, dtype=np.float64),
        spot_diameter_px=slide.spot_diameter_px,
    )


@dataclass(frozen=True)
class _Maps:
    """Footprint-filtered feature maps of one image, kept at a stride."""

    maps: np.ndarray  # (F, h, w) float32
    names: tuple[str, ...]
    shrink: int  # block size the image was first reduced by
    stride: int  # stride of the stored maps, in working pixels


# ---------------------------------------------------------------------------------------- geometry
def best_image_name(view: HistologyView) -> str:
    """Name of the image with the highest scale factor (the most pixels per spot)."""
    return max(view.images, key=lambda k: float(view.scalefactors.get(k, 0.0)))


def footprint_radius_px(view: HistologyView, kind: str | None = None) -> float:
    """Footprint radius in full-resolution pixels.

    Half of ``view.spot_diameter_px`` when known, else ``DIAMETER_PER_PITCH / 2`` pitch, with the
    pitch from the affine and the lattice ``kind`` (``None``: the smaller of the square and hex
    readings, i.e. the cautious one).
    """
    if view.spot_diameter_px is not None and np.isfinite(view.spot_diameter_px) and view.spot_diameter_px > 0:
        return 0.5 * float(view.spot_diameter_px)
    a = np.asarray(view.grid_to_px, dtype=np.float64)
    if kind is None:
        pitch = min(pitch_of_affine(a, "square"), pitch_of_affine(a, "hex"))
    else:
        pitch = pitch_of_affine(a, kind)
    return 0.5 * DIAMETER_PER_PITCH * pitch


def image_positions(
    view: HistologyView, rows: np.ndarray, cols: np.ndarray, image: str | None = None, scale: float = 1.0
) -> np.ndarray:
    """(n, 2) pixel ``(x, y)`` of lattice positions in image ``image`` (default: the best one).

    ``rows, cols`` are array coordinates divided by ``scale``: ``scale=2`` reads dense x2 grid
    indices ``(R, C)`` as array coordinates ``(R / 2, C / 2)``; half-integer floats work as well.
    """
    name = best_image_name(view) if image is None else image
    r = np.asarray(rows, dtype=np.float64) / scale
    c = np.asarray(cols, dtype=np.float64) / scale
    xy = apply_affine(np.asarray(view.grid_to_px, dtype=np.float64), r, c)
    return xy * float(view.scalefactors[name])


def histology_available(obj, min_px_per_spot: float = MIN_PX_PER_SPOT, kind: str | None = None) -> bool:
    """Whether histology features make sense: an image where a spot spans enough pixels.

    Parameters
    ----------
    obj
        A :class:`~napari_s2s.core.data.slide.Slide`, a :class:`HistologyView`, or ``None``.
    min_px_per_spot
        Minimum footprint diameter in pixels of the best image (Visium ``lowres`` images give about
        4.6, HER2ST ``hires`` about 29, the ST olfactory bulb image about 22).
    kind
        Lattice kind, used only when the spot diameter is unknown (a Slide supplies its own).

    Returns
    -------
    bool
        ``True`` when there is an image, pixel positions and a footprint of at least
        ``min_px_per_spot`` pixels across (the rule of ``--histology auto``).
    """
    if obj is None:
        return False
    if isinstance(obj, HistologyView):
        view = obj
    else:
        view = histology_view(obj)
        kind = getattr(obj, "kind", kind)
    if view is None or not view.images:
        return False
    name = best_image_name(view)
    scale = float(view.scalefactors.get(name, 0.0))
    if not scale > 0:
        return False
    return 2.0 * footprint_radius_px(view, kind) * scale >= min_px_per_spot


# ---------------------------------------------------------------------------------------- features
def feature_names(features: str = "basic", n_clusters: int = N_CLUSTERS) -> list[str]:
    """Column names of :func:`histology_features` for a feature set."""
    _check_set(features)
    names: list[str] = []
    if features in ("basic", "all"):
        names += [f"mean_{c}" for c in _MEAN_CHANNELS] + [f"sd_{c}" for c in _SPREAD_CHANNELS]
    if features in ("clusters", "all"):
        names += [f"cluster_{k}" for k in range(n_clusters)]
    return names


def histology_features(
    view: HistologyView,
    rows: np.ndarray,
    cols: np.ndarray,
    kind: str | None = None,
    *,
    scale: float = 1.0,
    features: str = "basic",
    image: str | None = None,
    n_clusters: int = N_CLUSTERS,
) -> np.ndarray:
    """H&E features over the footprint of each lattice position.

    Parameters
    ----------
    view
        The slide's images, scale factors and grid -> full-resolution pixel affine.
    rows, cols
        (n,) positions in array coordinates times ``scale`` (integers or floats).
    kind
        Lattice kind (``"hex"``/``"square"``); only used for the footprint when the spot diameter
        is unknown.
    scale
        Positions are ``(rows / scale, cols / scale)`` in array coordinates: 1 for spots, 2 for the
        dense x2 grid indices of the design (measured spots at ``(2 * row, 2 * col)``). The footprint
        stays the size of one spot at every scale.
    features
        ``"basic"`` (stain, colour and texture statistics; 17 columns), ``"clusters"`` (fraction of
        each of ``n_clusters`` pixel clusters learned on this image), ``"all"`` (both), or
        ``"encoder:/path/model.pt"`` (a local TorchScript encoder, see :func:`encoder_features`).
    image
        Image name; default the one with the highest scale factor.
    n_clusters
        Clusters of the ``clusters`` set.

    Returns
    -------
    numpy.ndarray
        (n, F) float32, columns named by :func:`feature_names`. Positions outside the image read
        the nearest edge pixels.
    """
    _check_set(features)
    if features.startswith(ENCODER_PREFIX):
        return encoder_features(view, rows, cols, kind, features[len(ENCODER_PREFIX) :], scale=scale, image=image)
    name = best_image_name(view) if image is None else image
    img = view.images[name]
    radius = footprint_radius_px(view, kind) * float(view.scalefactors[name])
    maps = _feature_maps(img, radius, features, n_clusters)
    xy = image_positions(view, rows, cols, image=name, scale=scale)
    # image px -> working px (block-mean shrink: block j is centred at j*f + (f-1)/2) -> map px
    f, s = maps.shrink, maps.stride
    y = ((xy[:, 1] - (f - 1) / 2.0) / f) / s
    x = ((xy[:, 0] - (f - 1) / 2.0) / f) / s
    out = np.empty((xy.shape[0], maps.maps.shape[0]), dtype=np.float32)
    coords = np.stack([y, x])
    for k in range(maps.maps.shape[0]):
        out[:, k] = ndimage.map_coordinates(maps.maps[k], coords, order=1, mode="nearest")
    return out


def encoder_features(
    view: HistologyView,
    rows: np.ndarray,
    cols: np.ndarray,
    kind: str | None,
    path: str,
    *,
    scale: float = 1.0,
    image: str | None = None,
    input_px: int = 224,
    batch: int = 128,
) -> np.ndarray:
    """Features of a pretrained histology encoder (a local TorchScript file) at lattice positions.

    ``path`` is a TorchScript file (``torch.jit.save``) or an exported program (``torch.export.save``,
    suffix ``.pt2``, exported with a dynamic batch dimension). Each position's square patch (side: the footprint diameter) is read from the image by bilinear
    sampling, resized to ``input_px``, scaled to [0, 1] and normalised with the ImageNet mean and
    standard deviation (the usual convention of histology foundation models), and passed through
    the encoder in batches on the CPU. The encoder must map (B, 3, input_px, input_px) float32 to
    (B, D) (further dimensions are flattened). Results are cached per image, encoder and positions.

    Parameters
    ----------
    view, rows, cols, kind, scale, image
        As for :func:`histology_features`.
    path
        Local path of the encoder; nothing is downloaded.
    input_px
        Patch size given to the encoder.
    batch
        Patches per forward pass.

    Returns
    -------
    numpy.ndarray
        (n, D) float32.

    Raises
    ------
    ValueError
        When the file is missing or is not a model archive.
    """
    import os

    import torch

    if not os.path.isfile(path):
        raise ValueError(f"{path}: histology encoder file not found")
    name = best_image_name(view) if image is None else image
    img = view.images[name]
    half = footprint_radius_px(view, kind) * float(view.scalefactors[name])
    xy = image_positions(view, rows, cols, image=name, scale=scale)
    key = (
        "encoder",
        _fingerprint(img),
        os.path.abspath(path),
        os.path.getmtime(path),
        round(half, 3),
        input_px,
        hashlib.blake2b(np.ascontiguousarray(xy).data, digest_size=16).hexdigest(),
    )
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit.copy()
    model = _load_encoder(path)
    rgb = np.asarray(img[..., :3], dtype=np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
    h, w = rgb.shape[:2]
    tensor = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    offs = torch.linspace(-half, half, input_px)
    gy, gx = torch.meshgrid(offs, offs, indexing="ij")
    out = []
    with torch.no_grad():
        for s in range(0, xy.shape[0], batch):
            c = torch.from_numpy(xy[s : s + batch].astype(np.float32))
            px = c[:, 0].view(-1, 1, 1) + gx  # (B, P, P) pixel x
            py = c[:, 1].view(-1, 1, 1) + gy
            # grid_sample's normalised coordinates (align_corners=True: -1 and 1 are pixel centres)
            grid = torch.stack([2 * px / max(w - 1, 1) - 1, 2 * py / max(h - 1, 1) - 1], dim=-1)
            patches = torch.nn.functional.grid_sample(
                tensor.expand(grid.shape[0], -1, -1, -1),
                grid,
                mode="bilinear",
                padding_mode="border",
                align_corners=True,
            )
            feats = model((patches - mean) / std)
            out.append(feats.reshape(feats.shape[0], -1).float().numpy())
    result = np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)
    _CACHE[key] = result
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return result.copy()


def _load_encoder(path: str):
    """A TorchScript (``torch.jit.save``) or exported (``torch.export.save``, ``.pt2``) module, on CPU."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            if str(path).endswith(".pt2"):
                model = torch.export.load(path).module()
            else:
                model = torch.jit.load(path, map_location="cpu")
                model.eval()
        except Exception as exc:  # not a model archive
            raise ValueError(
                f"{path}: not a TorchScript or torch.export histology encoder ({type(exc).__name__})"
            ) from None
    return model


def covariate_function(
    view: HistologyView,
    kind: str | None,
    fit_rows: np.ndarray,
    fit_cols: np.ndarray,
    *,
    scale: float = 1.0,
    offset: tuple[float, float] = (0.0, 0.0),
    n_components: int | None = 4,
    features: str = "basic",
):
    """H&E features as a network input: ``f(R, C) -> (n, K)`` standardised feature channels.

    The standardisation (and the optional PCA reduction to ``n_components`` channels) is fitted on
    the features of the positions ``(fit_rows, fit_cols)`` (array coordinates; pass the measured
    spots, so nothing depends on where predictions are wanted) and applied to every later call.
    The returned function maps grid coordinates ``(R, C)`` to array coordinates
    ``(R / scale + offset[0], C / scale + offset[1])``:

    * ``napari-s2s impute`` trains on every usable spot and predicts the x2 dense grid
      ``(2 row, 2 col)``: ``scale=2``, no offset;
    * the benchmark's ``s2s`` trains on the measured sub-lattice ``(row - a) / 2`` whose dense grid
      is ``(row - a, col - b)``: ``scale=1``, ``offset=(a, b)``.

    Parameters
    ----------
    view
        The slide's images and geometry.
    kind
        Lattice kind (for the footprint when the spot diameter is unknown).
    fit_rows, fit_cols
        Array coordinates of the positions the standardisation is fitted on.
    scale, offset
        Grid -> array coordinates, as above.
    n_components
        Number of principal components kept (``None``: all standardised features).
    features
        Feature set of :func:`histology_features`.

    Returns
    -------
    callable
        ``f(R, C) -> (n, K)`` float32, with the attribute ``n_channels`` (= K).
    """
    ref = histology_features(view, fit_rows, fit_cols, kind, features=features).astype(np.float64)
    mu = ref.mean(axis=0)
    sd = ref.std(axis=0)
    keep = sd > 1e-9 * (1.0 + np.abs(mu))
    z = (ref[:, keep] - mu[keep]) / sd[keep]
    if n_components is not None and z.shape[1] > 0:
        k = int(min(n_components, z.shape[1], max(z.shape[0] - 1, 1)))
        _, sv, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
        proj = vt[:k].T / np.maximum(sv[:k] / np.sqrt(max(z.shape[0], 1)), 1e-12)  # unit variance
    else:
        proj = np.eye(z.shape[1])
    zmean = z.mean(axis=0) if z.shape[0] else np.zeros(z.shape[1])
    off_r, off_c = float(offset[0]), float(offset[1])

    def covariates(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        r = np.asarray(rows, dtype=np.float64) / scale + off_r
        c = np.asarray(cols, dtype=np.float64) / scale + off_c
        f = histology_features(view, r, c, kind, features=features).astype(np.float64)
        return (((f[:, keep] - mu[keep]) / sd[keep] - zmean) @ proj).astype(np.float32)

    covariates.n_channels = int(proj.shape[1])
    return covariates


def feature_function(
    view: HistologyView,
    kind: str | None,
    *,
    scale: float = 1.0,
    offset: tuple[float, float] = (0.0, 0.0),
    features: str = "basic",
):
    """Raw H&E features at grid coordinates: ``f(R, C) -> (n, F)``.

    Grid coordinates map to array coordinates ``(R / scale + offset[0], C / scale + offset[1])``
    (see :func:`covariate_function` for the two conventions: ``scale=2`` for the x2 dense grid of a
    slide, ``scale=1`` with the sub-lattice offset for the benchmark's measured lattice).
    """
    off_r, off_c = float(offset[0]), float(offset[1])

    def feats(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        r = np.asarray(rows, dtype=np.float64) / scale + off_r
        c = np.asarray(cols, dtype=np.float64) / scale + off_c
        return histology_features(view, r, c, kind, features=features)

    return feats


def clear_cache() -> None:
    """Forget the cached feature maps."""
    _CACHE.clear()


def _check_set(features: str) -> None:
    if features.startswith(ENCODER_PREFIX) and len(features) > len(ENCODER_PREFIX):
        return
    if features not in FEATURE_SETS:
        raise ValueError(f"unknown histology feature set {features!r} (expected one of {FEATURE_SETS})")


def _fingerprint(img: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((img.shape, str(img.dtype))).encode())
    h.update(np.ascontiguousarray(img).data)  # whole content: an edited image never hits the cache
    return h.hexdigest()


def _feature_maps(img: np.ndarray, radius: float, features: str, n_clusters: int) -> _Maps:
    """Footprint-filtered maps for an image (cached on image content and parameters)."""
    key = (_fingerprint(img), round(float(radius), 3), features, n_clusters)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    maps = _compute_maps(img, radius, features, n_clusters)
    _CACHE[key] = maps
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return maps


#: Working-image pixels above which the basic maps are computed in strips of rows (a Visium HD hires
#: image: 36 M pixels; the whole-image route holds ~30 float copies of it, ~11 GB).
STRIP_ABOVE = 16_000_000
#: Rows of working pixels per strip (a multiple of any stride is taken).
STRIP_ROWS = 256
#: Most bytes of one image's stored maps on the strip route: a larger image keeps them at a coarser
#: stride (the Gaussian-filtered maps are smooth at the footprint's scale; positions interpolate).
MAX_MAP_BYTES = 512 * 2**20


def _working_rgb(img: np.ndarray, shrink: int) -> np.ndarray:
    """Float32 RGB in [0, 1], block-mean shrunk by ``shrink``."""
    from skimage.transform import downscale_local_mean

    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    rgb = np.asarray(img[..., :3])
    rgb = rgb.astype(np.float32) / (255.0 if rgb.dtype == np.uint8 else max(1.0, float(rgb.max())))
    if shrink > 1:
        rgb = downscale_local_mean(rgb, (shrink, shrink, 1)).astype(np.float32)
    return rgb


def _pixel_channels(rgb: np.ndarray, t_grey: float | None = None, t_h: float | None = None) -> dict:
    """Per-pixel channels of a working RGB image (colour, stains, texture, tissue and nuclear masks).

    ``t_grey`` / ``t_h``: the tissue (grey below) and nuclear (haematoxylin above, within tissue)
    thresholds; ``None``: Otsu's over this image (the strip route passes the whole image's).
    """
    from skimage.color import rgb2gray, rgb2hed
    from skimage.filters import sobel, threshold_otsu

    grey = rgb2gray(rgb).astype(np.float32)
    hed = rgb2hed(rgb).astype(np.float32)
    chans = {
        "R": rgb[..., 0],
        "G": rgb[..., 1],
        "B": rgb[..., 2],
        "grey": grey,
        "H": hed[..., 0],
        "E": hed[..., 1],
        "D": hed[..., 2],
    }
    chans["gradient"] = sobel(grey).astype(np.float32)
    chans["detail"] = np.abs(grey - ndimage.gaussian_filter(grey, 1.0)).astype(np.float32)
    tissue = grey < (_otsu(grey, threshold_otsu) if t_grey is None else t_grey)
    chans["tissue"] = tissue.astype(np.float32)
    if t_h is None:
        t_h = _otsu(hed[..., 0][tissue] if tissue.sum() > 16 else hed[..., 0].ravel(), threshold_otsu)
    chans["nuclear"] = ((hed[..., 0] > t_h) & tissue).astype(np.float32)
    return chans


def _compute_maps(img: np.ndarray, radius: float, features: str, n_clusters: int) -> _Maps:
    shrink = max(1, int(np.ceil(radius / MAX_RADIUS_PX)))
    work_px = -(-img.shape[0] // shrink) * -(-img.shape[1] // shrink)
    if features == "basic" and work_px > STRIP_ABOVE and img.dtype == np.uint8:
        return _compute_maps_in_strips(img, radius, shrink)
    rgb = _working_rgb(img, shrink)
    if shrink > 1:
        radius = radius / shrink
    sigma = max(radius / 2.0, 0.5)
    stride = max(1, int(sigma // 2))
    chans = _pixel_channels(rgb)

    def window(a: np.ndarray) -> np.ndarray:
        # Gaussian window with the disk's second moment, cut at one radius (truncate * sigma = r);
        # the second pass only over the rows kept (the numbers of the whole filter, subsampled)
        return _separable_window(a, sigma, stride)

    out: list[np.ndarray] = []
    names: list[str] = []
    if features in ("basic", "all"):
        for c in _MEAN_CHANNELS:
            out.append(window(chans[c]))
            names.append(f"mean_{c}")
        for c in _SPREAD_CHANNELS:
            m = window(chans[c])
            m2 = window(chans[c] * chans[c])
            out.append(np.sqrt(np.maximum(m2 - m * m, 0.0)))
            names.append(f"sd_{c}")
    if features in ("clusters", "all"):
        labels = _pixel_clusters(chans, chans["tissue"] > 0, n_clusters)
        for k in range(n_clusters):
            out.append(window((labels == k).astype(np.float32)))
            names.append(f"cluster_{k}")
    return _Maps(maps=np.stack(out).astype(np.float32), names=tuple(names), shrink=shrink, stride=stride)


def _compute_maps_in_strips(img: np.ndarray, radius: float, shrink: int) -> _Maps:
    """The ``basic`` maps of a large uint8 image, strip by strip: the same numbers as the whole-image
    route at the same stride (filters see a halo of rows around each strip; the Otsu thresholds
    are those of the whole image), in the memory of a strip plus two float32 planes, and the stored
    maps at most :data:`MAX_MAP_BYTES`."""
    from skimage.color import rgb2gray, rgb2hed
    from skimage.filters import threshold_otsu

    radius = radius / shrink
    sigma = max(radius / 2.0, 0.5)
    h = -(-img.shape[0] // shrink)
    w = -(-img.shape[1] // shrink)
    n_maps = len(_MEAN_CHANNELS) + len(_SPREAD_CHANNELS)
    stride = max(1, int(sigma // 2))
    while n_maps * (-(-h // stride)) * (-(-w // stride)) * 4 > MAX_MAP_BYTES:
        stride += 1
    step = max(stride, (STRIP_ROWS // stride) * stride)

    def rows(lo: int, hi: int) -> np.ndarray:  # working rows [lo, hi)
        return _working_rgb(img[lo * shrink : hi * shrink], shrink)

    # pass 1: the whole image's thresholds (tissue: grey below Otsu; nuclear: H above the tissue's Otsu)
    grey = np.empty((h, w), np.float32)
    hch = np.empty((h, w), np.float32)
    for lo in range(0, h, step):
        rgb = rows(lo, min(h, lo + step))
        grey[lo : lo + len(rgb)] = rgb2gray(rgb)
        hch[lo : lo + len(rgb)] = rgb2hed(rgb)[..., 0]
    t_grey = _otsu(grey, threshold_otsu)
    tissue = grey < t_grey
    del grey
    t_h = _otsu(hch[tissue] if tissue.sum() > 16 else hch.ravel(), threshold_otsu)
    del hch, tissue

    # pass 2: per strip of output rows, the per-pixel channels over the strip and a halo, filtered
    window_r = int(2.0 * sigma + 0.5)  # gaussian_filter's radius at truncate=2
    halo = window_r + 4 + 1  # + the detail blur (sigma 1, radius 4) + the Sobel stencil
    out = np.empty((n_maps, -(-h // stride), -(-w // stride)), np.float32)
    for a in range(0, h, step):
        b = min(h, a + step)
        lo, hi = max(0, a - halo), min(h, b + halo)
        rgb = rows(lo, hi)
        chans = _pixel_channels(rgb, t_grey, t_h)

        def window(x: np.ndarray, a=a, b=b, lo=lo) -> np.ndarray:
            return _separable_window(x, sigma, stride, rows=slice(a - lo, b - lo))

        i = 0
        for c in _MEAN_CHANNELS:
            part = window(chans[c])
            out[i, a // stride : a // stride + len(part)] = part
            i += 1
        for c in _SPREAD_CHANNELS:
            m = window(chans[c])
            m2 = window(chans[c] * chans[c])
            out[i, a // stride : a // stride + len(m)] = np.sqrt(np.maximum(m2 - m * m, 0.0))
            i += 1
    return _Maps(maps=out, names=tuple(feature_names("basic")), shrink=shrink, stride=stride)


def _separable_window(a: np.ndarray, sigma: float, stride: int, rows: slice = slice(None)) -> np.ndarray:
    """``gaussian_filter(a, sigma, truncate=2, mode="nearest")[rows][::stride, ::stride]``, the same
    numbers in about half the time: the filter is separable (rows first, as scipy's), so the second
    pass runs only over the rows kept."""
    first = ndimage.gaussian_filter1d(a, sigma, axis=0, truncate=2.0, mode="nearest")[rows][::stride]
    return ndimage.gaussian_filter1d(first, sigma, axis=1, truncate=2.0, mode="nearest")[:, ::stride]


def _otsu(values: np.ndarray, threshold_otsu) -> float:
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0 or np.ptp(values) == 0:
        return float(values.max()) + 1.0 if values.size else 0.0
    return float(threshold_otsu(values))


def _pixel_clusters(chans: dict, tissue: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Label every pixel with one of ``n_clusters`` k-means clusters learned on tissue pixels.

    Descriptors: H, E, grey, gradient and detail, lightly blurred (1 px) and standardised over the
    tissue; background pixels (outside the tissue) get the label ``-1``.
    """
    from scipy.cluster.vq import kmeans2, vq

    keys = ("H", "E", "grey", "gradient", "detail")
    desc = np.stack([ndimage.gaussian_filter(chans[k], 1.0) for k in keys], axis=-1)
    flat = desc[tissue]
    labels = np.full(tissue.shape, -1, dtype=np.int32)
    if flat.shape[0] < n_clusters * 4:
        return labels
    mu = flat.mean(axis=0)
    sd = flat.std(axis=0) + 1e-6
    rng = np.random.default_rng(seed)
    sample = flat[rng.choice(flat.shape[0], size=min(flat.shape[0], 50_000), replace=False)]
    centres, _ = kmeans2((sample - mu) / sd, n_clusters, minit="++", seed=seed, iter=20)
    # order clusters by their mean haematoxylin so that labels are reproducible and readable
    centres = centres[np.argsort(centres[:, 0])]
    codes, _ = vq(((flat - mu) / sd).astype(np.float64), centres.astype(np.float64))
    labels[tissue] = codes.astype(np.int32)
    return labels
