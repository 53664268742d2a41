"""SpatialData ``.zarr`` stores: a table of counts read as a slide, imputed results written back.

Reading (needs the optional ``spatialdata`` package, ``pip install "napari-s2s[spatialdata]"``): the
store must hold a table (AnnData) annotating shapes or points (``uns['spatialdata_attrs']``: region,
region key, instance key). Positions are the centroids of the annotated shapes (or the points), put
in the element's coordinate system (``global`` when it has one). Then either

* the table has ``obs['array_row'|'array_col']`` (Visium and Visium HD written by spatialdata-io, or
  a napari-s2s result): a lattice slide, pitch from the technology (Visium), from a ``square_XXXum``
  region name (Visium HD) or ``pitch_um``; or
* it is a table of cells (Xenium written by spatialdata-io): cells, or the transcripts of a points
  element carrying gene names, are binned into square bins of ``bin_um`` um (:mod:`.binning`), as
  for a Xenium folder. A table whose gene names were lost (var names ``0 .. n-1``: a real crop has
  them so) is binned from the transcripts, which carry the names.

Micrometres: spatialdata-io keeps Xenium shapes and points in micrometres with a scale to the
``global`` coordinate system (morphology pixels), so for Xenium data one unit of the element's own
coordinates is 1 um. Other coordinate systems carry no unit in SpatialData; cells are then binned
taking one unit as 1 um, with a warning.

The slide's full-resolution pixels are the coordinate system's units shifted to the data's corner
(``metadata['spatialdata']['origin']``); the image (H&E when there is one, else the first image) is
resampled once into that frame at most 4,096 pixels across, through its full affine transformation
(the H&E of a Xenium run is rotated and mirrored against the morphology frame).

Writing (:func:`write_spatialdata`): the imputed x2 dense grid as a table annotating circles at the
dense positions, the measured values of the same genes as a table annotating the measured spots,
and the image, all in the input's coordinate system: it opens in napari-spatialdata next to the
measured data, and reopens in napari-s2s as a result.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import SlideError
from .binning import DEFAULT_BIN_UM, MIN_QV, TranscriptBinner, bin_cells, check_bin_um, is_control
from .slide import Slide

INSTALL_HINT = 'SpatialData needs the optional spatialdata package: pip install "napari-s2s[spatialdata]"'
_ELEMENT_DIRS = ("tables", "images", "points", "shapes", "labels")
_SQUARE = re.compile(r"square_(\d+)um")
#: Columns of a points element that can hold gene names (spatialdata's ``feature_key`` first).
GENE_COLUMNS = ("feature_name", "gene", "genes", "target", "gene_name")
#: Names of the elements napari-s2s writes.
DENSE_SHAPES, MEASURED_SHAPES, IMAGE_NAME = "s2s_dense", "s2s_measured_spots", "s2s_image"
DENSE_TABLE, MEASURED_TABLE = "s2s_imputed", "s2s_measured"


def looks_like_spatialdata(p: Path, with_table: bool = False) -> bool:
    """Cheap check: a zarr group folder named ``*.zarr`` with SpatialData's element folders
    (with ``with_table``, a non-empty ``tables/``)."""
    if not (p.is_dir() and p.suffix.lower() == ".zarr"):
        return False
    if not any((p / m).exists() for m in (".zgroup", "zarr.json", "zmetadata", ".zattrs")):
        return False
    if with_table:
        t = p / "tables"
        return t.is_dir() and any(c.is_dir() for c in t.iterdir())
    return any((p / d).is_dir() for d in _ELEMENT_DIRS)


def import_spatialdata(path=None):
    """The ``spatialdata`` module, or a :class:`SlideError` saying how to install it."""
    try:
        import spatialdata
    except ImportError as e:
        if getattr(e, "name", None) in (None, "spatialdata") or str(e.name).startswith("spatialdata."):
            raise SlideError(path, INSTALL_HINT) from None
        # installed, but one of its own dependencies is missing (e.g. pkg_resources from setuptools>=81)
        raise SlideError(path, f"spatialdata is installed but cannot be imported ({e}); {INSTALL_HINT}") from None
    return spatialdata


@contextlib.contextmanager
def _quiet():
    """spatialdata and ome-zarr log and warn about format versions and label parents: not for users."""
    loggers = [logging.getLogger(n) for n in ("ome_zarr", "spatialdata", "ome_zarr.reader")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


# ====================================================================== reading
def read_spatialdata(
    path: Path, bin_um: float | None = None, pitch_um: float | None = None, counts_from: str = "auto"
) -> Slide:
    """Read a SpatialData store's table as a slide (see the module docstring).

    Raises
    ------
    SlideError
        spatialdata not installed, an unreadable store, no table, a table annotating no shapes or
        points, instances of the table missing from its element, nothing to bin.
    """
    sd = import_spatialdata(path)
    path = Path(path)
    try:
        with _quiet():
            sdata = sd.read_zarr(path)
    except Exception as exc:  # zarr, ome-zarr and spatialdata raise many types
        raise SlideError(path, f"not a readable SpatialData store ({_short(exc)})") from None
    if not len(sdata.tables):
        raise SlideError(
            path, "SpatialData store has no table: napari-s2s needs a table of counts annotating shapes or points"
        )
    tname, table = _pick_table(sdata, bin_um)
    tpath = path / "tables" / tname
    region, element, kind = _annotated_element(sdata, table, tpath)
    rows_of_region = _region_rows(table, region)
    table = table[rows_of_region] if rows_of_region is not None else table
    cs = _coordinate_system(element)
    ids = _instance_ids(table, tpath)
    xy_cs = _element_centroids(element, kind, ids, cs, tpath, region)
    obs = table.obs
    if "array_row" in obs and "array_col" in obs:
        slide = _lattice_slide(path, sdata, table, region, xy_cs, cs, pitch_um)
    else:
        slide = _binned_slide(path, sdata, table, element, kind, xy_cs, cs, bin_um, counts_from, tpath)
    slide.source = str(path)
    slide.metadata.setdefault("spatialdata", {}).update({"table": tname, "region": region, "coordinate_system": cs})
    return slide


def _pick_table(sdata, bin_um):
    names = list(sdata.tables)
    annotating = [n for n in names if isinstance(sdata.tables[n].uns.get("spatialdata_attrs"), dict)]
    pool = annotating or names
    results = [n for n in pool if isinstance(sdata.tables[n].uns.get("s2s"), dict)]
    if results:
        return results[0], sdata.tables[results[0]]
    if bin_um is not None:
        tag = f"square_{int(round(bin_um)):03d}um"
        hit = [
            n for n in pool if tag in n or tag in str(sdata.tables[n].uns.get("spatialdata_attrs", {}).get("region"))
        ]
        if hit:
            return hit[0], sdata.tables[hit[0]]
    for prefer in ("table", "square_008um"):
        hit = [n for n in pool if n == prefer or prefer in n]
        if hit:
            return hit[0], sdata.tables[hit[0]]
    return pool[0], sdata.tables[pool[0]]


def _annotated_element(sdata, table, tpath: Path):
    attrs = table.uns.get("spatialdata_attrs")
    if not isinstance(attrs, dict) or not attrs.get("region"):
        raise SlideError(tpath, "table annotates no shapes or points (no uns['spatialdata_attrs'] region)")
    regions = [attrs["region"]] if isinstance(attrs["region"], str) else list(attrs["region"])
    for r in regions:
        if r in sdata.shapes:
            return r, sdata.shapes[r], "shapes"
        if r in sdata.points:
            return r, sdata.points[r], "points"
    where = "labels" if any(r in sdata.labels for r in regions) else "the store"
    raise SlideError(
        tpath,
        f"table annotates {', '.join(map(repr, regions))} in {where}; napari-s2s needs shapes or points "
        f"(their centroids are the positions)",
    )


def _region_rows(table, region) -> np.ndarray | None:
    key = table.uns["spatialdata_attrs"].get("region_key")
    if key and key in table.obs:
        rows = (table.obs[key].astype(str) == str(region)).to_numpy()
        return None if rows.all() else rows
    return None


def _coordinate_system(element) -> str:
    from spatialdata.transformations import get_transformation

    systems = list(get_transformation(element, get_all=True))
    return "global" if "global" in systems or not systems else systems[0]


def _affine(element, cs: str) -> np.ndarray:
    """3x3 affine from the element's (x, y) to the coordinate system's (x, y)."""
    from spatialdata.transformations import get_transformation

    try:
        t = get_transformation(element, cs)
    except Exception:  # no transformation to that system
        return np.eye(3)
    return np.asarray(t.to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y")), np.float64)


def _instance_ids(table, tpath: Path) -> pd.Index:
    key = table.uns["spatialdata_attrs"].get("instance_key")
    if not key or key not in table.obs:
        raise SlideError(tpath, f"table has no instance key column {key!r} linking rows to shapes or points")
    return pd.Index(table.obs[key].to_numpy())


def _element_centroids(element, kind, ids: pd.Index, cs: str, tpath: Path, region: str) -> np.ndarray:
    """(n, 2) ``(x, y)`` in ``cs`` of the table's instances."""
    if kind == "shapes":
        geom = element.geometry
        pts = np.stack([geom.centroid.x.to_numpy(), geom.centroid.y.to_numpy()], axis=1)
        index = pd.Index(element.index)
    else:
        df = element[["x", "y"]].compute()
        pts = df.to_numpy(np.float64)
        index = pd.Index(df.index)
    where = index.get_indexer(ids) if index.is_unique else np.full(len(ids), -1)
    if (where < 0).any():
        raise SlideError(tpath, f"{int((where < 0).sum())} of {len(ids)} table rows have no element in {region!r}")
    a = _affine(element, cs)
    xy = pts[where]
    return xy @ a[:2, :2].T + a[:2, 2]


# ---------------------------------------------------------------------- lattice tables
def _lattice_slide(path, sdata, table, region, xy_cs, cs, pitch_um) -> Slide:
    from .io import _dense_pitch, _make_slide, _unique
    from .slide import check_counts

    obs = table.obs
    counts = _counts(table, path)
    check_counts(counts, str(path))
    rows = pd.to_numeric(obs["array_row"], errors="coerce").to_numpy(np.float64)
    cols = pd.to_numeric(obs["array_col"], errors="coerce").to_numpy(np.float64)
    if not (np.isfinite(rows).all() and np.isfinite(cols).all()) or not (
        np.allclose(rows, np.round(rows)) and np.allclose(cols, np.round(cols))
    ):
        raise SlideError(path, "obs['array_row'|'array_col'] are not integers")
    in_tissue = obs["in_tissue"].to_numpy().astype(bool) if "in_tissue" in obs else np.ones(len(obs), bool)
    prov = table.uns.get("s2s") if isinstance(table.uns.get("s2s"), dict) else None
    imputed = prov is not None and "s2s_measured" in obs
    saved = (prov or {}).get("frame_origin")
    if saved is not None and np.asarray(saved).shape == (2,):  # a result keeps its slide's frame
        origin = np.asarray(saved, np.float64)
    else:
        origin = np.floor(np.nanmin(xy_cs, axis=0)) if len(xy_cs) else np.zeros(2)
    xy = xy_cs - origin
    m = _SQUARE.search(region)
    if pitch_um is None and imputed:
        pitch_um = _dense_pitch(prov, path)
    elif pitch_um is None and m:
        pitch_um = float(int(m.group(1)))
    images, factors, image_name = _slide_image(sdata, cs, origin, xy)
    slide = _make_slide(
        path=path,
        counts=counts,
        genes=_unique(np.asarray(table.var_names).astype(str)),
        barcodes=np.asarray(table.obs_names).astype(str),
        rows=np.round(rows).astype(np.int64),
        cols=np.round(cols).astype(np.int64),
        in_tissue=in_tissue,
        xy=xy,
        images=images,
        factors=factors,
        spot_diameter=None,
        library_id=region,
        n_total=len(obs),
        pitch_um=pitch_um,
    )
    if m and not imputed and slide.kind == "square":
        import dataclasses

        slide.geometry = dataclasses.replace(slide.geometry, technology="visium_hd")
        slide.metadata["bin_um"] = float(int(m.group(1)))
    if imputed:
        slide.values_are_lognorm = True
        slide.metadata["s2s"] = dict(prov)
        slide.metadata["s2s_measured"] = obs["s2s_measured"].to_numpy().astype(bool)
    slide.metadata["spatialdata"] = {"origin": [float(origin[0]), float(origin[1])], "um_per_unit": None}
    if image_name:
        slide.metadata["image_label"] = image_name
    return slide


def _counts(table, path=None) -> sp.csr_matrix:
    x = table.layers["counts"] if "counts" in table.layers else table.X
    if x is None:
        raise SlideError(path, "table has no count matrix")
    if not sp.issparse(x):
        x = np.asarray(x)
    return sp.csr_matrix(x, dtype=np.float32)


# ---------------------------------------------------------------------- tables of cells
def _names_lost(table) -> bool:
    names = np.asarray(table.var_names).astype(str)
    return names.size > 0 and np.array_equal(names, np.arange(names.size).astype(str))


def _is_xenium(sdata, table) -> bool:
    obs = table.obs
    if "transcript_counts" in obs and ("cell_area" in obs or "control_probe_counts" in obs):
        return True
    return any({"feature_name", "qv"} <= set(p.columns) for p in sdata.points.values())


def _um_per_unit(sdata, table, element, cs, tpath) -> float:
    a = _affine(element, cs)
    lin = a[:2, :2]
    if _is_xenium(sdata, table):
        s = np.sqrt(abs(np.linalg.det(lin)))
        if (
            s > 0
            and np.allclose(lin, np.diag(np.diag(lin)), atol=1e-9 * s)
            and np.allclose(abs(lin[0, 0]), abs(lin[1, 1]))
        ):
            return 1.0 / s  # spatialdata-io: Xenium elements in um, scaled to morphology pixels
    warnings.warn(f"{tpath}: coordinate system {cs!r} has no unit; one unit taken as 1 um for the bins", stacklevel=4)
    return 1.0


def _gene_points(sdata):
    """``(name, element, gene column)`` of the first points element carrying gene names, or ``None``."""
    for name, p in sdata.points.items():
        key = (p.attrs.get("spatialdata_attrs") or {}).get("feature_key")
        cols = [key] if key in p.columns else [c for c in GENE_COLUMNS if c in p.columns]
        if cols:
            return name, p, cols[0]
    return None


def _binned_slide(path, sdata, table, element, kind, xy_cs, cs, bin_um, counts_from, tpath) -> Slide:
    from .xenium import make_binned_slide

    bin_um = check_bin_um(DEFAULT_BIN_UM if bin_um is None else bin_um, path)
    um = _um_per_unit(sdata, table, element, cs, tpath)
    lost = _names_lost(table)
    points = _gene_points(sdata)
    source = counts_from
    if counts_from == "auto":
        source = "transcripts" if lost and points is not None else "cells"
    if source == "cells":
        if lost:
            raise SlideError(
                tpath,
                "the table's gene names were lost (var names 0..n-1): its cells cannot be binned by gene; "
                + (
                    "bin the transcripts instead (--bin-from transcripts)"
                    if points is not None
                    else "and no points element carries gene names to bin instead"
                ),
            )
        counts = _counts(table, tpath)
        genes = np.asarray(table.var_names).astype(str)
        keep = ~is_control(genes)
        rows, cols, binned = bin_cells(xy_cs[:, 0] * um, xy_cs[:, 1] * um, counts[:, keep], bin_um)
        genes, n_items = genes[keep], counts.shape[0]
        where = tpath
    else:
        if points is None:
            raise SlideError(path, "no points element carries gene names (transcripts) to bin")
        pname, pts, gcol = points
        rows, cols, binned, genes, n_items = _bin_points(pts, gcol, cs, um, bin_um)
        where = path / "points" / pname
    if binned.shape[0] == 0 or binned.shape[1] == 0:
        raise SlideError(where, "nothing to count: no gene with a position")
    b_units = bin_um / um
    origin = np.array([cols.min() * b_units, rows.min() * b_units])
    xy_frame = np.stack([(cols + 0.5) * b_units, (rows + 0.5) * b_units], 1) - origin
    images, factors, image_name = _slide_image(sdata, cs, origin, xy_frame, margin=0.5 * b_units)
    slide = make_binned_slide(
        path=where,
        rows=rows,
        cols=cols,
        counts=binned,
        genes=genes,
        bin_um=bin_um,
        um_per_px=um,
        images=images,
        factors=factors,
        technology="xenium" if _is_xenium(sdata, table) else None,
        library_id=path.stem,
        origin_px=(float(origin[0]), float(origin[1])),
    )
    slide.metadata.update({"counts_from": source, "n_cells" if source == "cells" else "n_transcripts": int(n_items)})
    slide.metadata["spatialdata"] = {"origin": [float(origin[0]), float(origin[1])], "um_per_unit": um}
    if image_name:
        slide.metadata["image_label"] = image_name
    return slide


def _bin_points(pts, gcol: str, cs: str, um: float, bin_um: float):
    a = _affine(pts, cs)
    binner = TranscriptBinner(bin_um)
    cols = ["x", "y", gcol] + (["qv"] if "qv" in pts.columns else [])
    for i in range(pts.npartitions):
        df = pts[cols].get_partition(i).compute()
        xy = df[["x", "y"]].to_numpy(np.float64) @ a[:2, :2].T + a[:2, 2]
        names = df[gcol].astype("category")
        codes = binner.gene_codes(list(names.cat.categories))
        idx = names.cat.codes.to_numpy().astype(np.int64)
        gene = np.where(idx >= 0, codes[np.maximum(idx, 0)], -1) if len(codes) else np.full(len(idx), -1)
        if "qv" in df:
            gene = np.where(df["qv"].to_numpy(np.float64) >= MIN_QV, gene, -1)
        binner.add(xy[:, 0] * um, xy[:, 1] * um, gene)
    rows, c, counts, genes = binner.result()
    return rows, c, counts, genes, binner.n_molecules


# ---------------------------------------------------------------------- images
def _pick_image(sdata, cs: str):
    """Name of the image to show: an RGB H&E first (names with 'he'/'h&e'/'hires'), else the first in ``cs``."""
    from spatialdata.transformations import get_transformation

    names = [n for n in sdata.images if cs in get_transformation(sdata.images[n], get_all=True)]
    if not names:
        return None

    def score(n):
        low = n.lower()
        he = any(t in low for t in ("he_", "h&e", "hne", "hires", "_he", "he")) and _n_channels(sdata.images[n]) == 3
        return (0 if he else 1 if "morphology_focus" in low else 2, names.index(n))

    return min(names, key=score)


def _levels(img) -> list:
    """Pyramid levels (xarray DataArrays, finest first) of a single- or multi-scale image."""
    if hasattr(img, "children") and len(getattr(img, "children", {})):
        return [
            next(iter(img[k].data_vars.values()))
            for k in sorted(img.children, key=lambda k: int(k.replace("scale", "") or 0))
        ]
    return [img]


def _n_channels(img) -> int:
    lv = _levels(img)[0]
    return int(lv.sizes.get("c", 1))


def _slide_image(sdata, cs: str, origin: np.ndarray, xy_frame: np.ndarray, margin: float = 0.0):
    """The chosen image resampled into the slide's frame (cs units minus ``origin``): ``({name: rgb}, {name: factor})``."""
    from skimage.transform import AffineTransform, warp

    from . import pyramid
    from .pyramid import to_rgb_uint8

    name = _pick_image(sdata, cs)
    if name is None or len(xy_frame) == 0:
        return {}, {}, None
    img = sdata.images[name]
    a = _affine(img, cs)  # level-0 intrinsic (x, y) -> cs
    hi = np.nanmax(xy_frame, axis=0) + margin
    extent = np.maximum(hi, 1e-9)  # the frame starts at 0 (the data's corner)
    native = 1.0 / np.sqrt(abs(np.linalg.det(a[:2, :2])))  # level-0 pixels per cs unit
    factor = float(min(native, pyramid.MAX_IMAGE_SIDE / max(extent)))
    out_shape = (int(np.ceil(extent[1] * factor)) + 1, int(np.ceil(extent[0] * factor)) + 1)
    levels = _levels(img)
    full_w = levels[0].sizes["x"]
    # the coarsest level still at least as fine as the output
    k = 0
    for i, lv in enumerate(levels):
        if native * lv.sizes["x"] / full_w >= factor * 0.999:
            k = i
    lv = levels[k]
    f = lv.sizes["x"] / full_w  # level pixels per level-0 pixel
    # output pixel (col, row) -> frame (x, y) = (col, row) / factor -> cs (+ origin) -> intrinsic -> level index
    out_to_frame = np.diag([1 / factor, 1 / factor, 1.0])
    frame_to_cs = np.eye(3)
    frame_to_cs[:2, 2] = origin
    cs_to_int = np.linalg.inv(a)
    int_to_level = np.array([[f, 0, -0.5], [0, f, -0.5], [0, 0, 1.0]])  # pixel centres at intrinsic i + 0.5
    m = int_to_level @ cs_to_int @ frame_to_cs @ out_to_frame
    corners = np.array([[0, 0, 1], [out_shape[1], 0, 1], [0, out_shape[0], 1], [out_shape[1], out_shape[0], 1]], float)
    src = (m @ corners.T)[:2].T
    x0 = int(max(np.floor(src[:, 0].min()) - 2, 0))
    y0 = int(max(np.floor(src[:, 1].min()) - 2, 0))
    x1 = int(min(np.ceil(src[:, 0].max()) + 3, lv.sizes["x"]))
    y1 = int(min(np.ceil(src[:, 1].max()) + 3, lv.sizes["y"]))
    if x1 <= x0 or y1 <= y0:
        return {}, {}, None
    with _quiet():
        crop = np.asarray(lv.transpose("y", "x", ...).isel(x=slice(x0, x1), y=slice(y0, y1)).values)
    if crop.ndim == 2:
        crop = crop[..., None]
    shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1.0]])
    rgb = to_rgb_uint8(crop)
    warped = warp(
        rgb,
        AffineTransform(matrix=shift @ m),
        output_shape=out_shape,
        order=1,
        preserve_range=True,
        mode="constant",
        cval=255 if _n_channels(img) == 3 else 0,
    )
    return {"image": np.clip(warped, 0, 255).astype(np.uint8)}, {"image": factor}, name


# ====================================================================== writing
def write_spatialdata(adata, slide: Slide, out_path: str | Path, source: str | Path | None = None) -> Path:
    """Write an imputed result (the AnnData of :meth:`ImputedResult.to_anndata`) as a SpatialData store.

    Elements, in the input's coordinate system (``global`` unless the input said otherwise):
    ``s2s_imputed`` (the dense grid's values, annotating the ``s2s_dense`` circles), ``s2s_measured``
    (the measured log-normalised values of the same genes and their counts, annotating the
    ``s2s_measured_spots`` circles) and ``s2s_image`` (the slide's image). Written to a temporary
    folder, then moved into place; never over the input. Returns the path written.
    """
    from ..checks import check_output_path

    sd = import_spatialdata(out_path)
    from spatialdata.models import Image2DModel, ShapesModel, TableModel
    from spatialdata.transformations import Identity, Scale, Sequence, Translation

    out = check_output_path(out_path, inputs=[source], option="output", store=True)
    meta = slide.metadata.get("spatialdata") or {}
    cs = meta.get("coordinate_system") or "global"
    origin = np.asarray(meta.get("origin") or [0.0, 0.0], np.float64)
    g = slide.geometry
    genes = [str(v) for v in adata.var_names]

    if "spatial" in adata.obsm and slide.pixel_xy is not None:
        dense_xy = np.asarray(adata.obsm["spatial"], np.float64) + origin
        spot_xy = slide.pixel_xy[slide.usable()] + origin
        pitch = g.pitch_px or 1.0
    else:  # grid-only slide: the slide's world (y, x) units
        a = g.grid_to_world()
        r, c = adata.obs["array_row"].to_numpy() / 2.0, adata.obs["array_col"].to_numpy() / 2.0
        dense_xy = np.stack([a[1, 0] * r + a[1, 1] * c + a[1, 2], a[0, 0] * r + a[0, 1] * c + a[0, 2]], 1)
        spot_xy = slide.spot_world()[slide.usable()][:, ::-1]
        pitch = float(np.hypot(*a[:2, 1])) or 1.0
    spot_radius = 0.5 * (slide.spot_diameter_px if slide.spot_diameter_px and slide.pixel_xy is not None else pitch)
    ident = {cs: Identity()}
    shapes = {
        DENSE_SHAPES: ShapesModel.parse(
            dense_xy,
            geometry=0,
            radius=np.full(len(dense_xy), 0.25 * pitch),
            index=np.arange(len(dense_xy)),
            transformations=ident,
        ),
        MEASURED_SHAPES: ShapesModel.parse(
            spot_xy,
            geometry=0,
            radius=np.full(len(spot_xy), min(spot_radius, 0.5 * pitch)),
            index=np.arange(len(spot_xy)),
            transformations=ident,
        ),
    }
    dense = adata.copy()
    dense.uns.pop("spatial", None)
    dense.uns["s2s"] = {**dict(dense.uns.get("s2s", {})), "frame_origin": [float(origin[0]), float(origin[1])]}
    dense.obs["region"] = pd.Categorical([DENSE_SHAPES] * dense.n_obs)
    dense.obs["instance_id"] = np.arange(dense.n_obs)
    dense.obsm.pop("spatial", None)
    dense.obsm["spatial"] = dense_xy
    import anndata as ad

    use = slide.usable()
    measured = ad.AnnData(
        X=slide.lognorm(genes),
        obs=pd.DataFrame(
            {
                "array_row": slide.array_row[use],
                "array_col": slide.array_col[use],
                "in_tissue": np.ones(int(use.sum()), np.int64),
                "region": pd.Categorical([MEASURED_SHAPES] * int(use.sum())),
                "instance_id": np.arange(int(use.sum())),
            },
            index=pd.Index(slide.barcodes[use]).astype(str),
        ),
        var=pd.DataFrame(index=pd.Index(genes)),
    )
    if not slide.values_are_lognorm:
        measured.layers["counts"] = slide.counts[:, slide.gene_indices(genes)][use]
    measured.obsm["spatial"] = spot_xy
    tables = {
        DENSE_TABLE: TableModel.parse(dense, region=DENSE_SHAPES, region_key="region", instance_key="instance_id"),
        MEASURED_TABLE: TableModel.parse(
            measured, region=MEASURED_SHAPES, region_key="region", instance_key="instance_id"
        ),
    }
    images = {}
    name = slide.best_image()
    if name is not None:
        f = slide.scalefactors[name]
        t = Sequence([Scale([1 / f, 1 / f], axes=("x", "y")), Translation(origin, axes=("x", "y"))])
        images[IMAGE_NAME] = Image2DModel.parse(
            np.moveaxis(slide.images[name], -1, 0),
            dims=("c", "y", "x"),
            c_coords=["r", "g", "b"],
            transformations={cs: t},
        )
    sdata = sd.SpatialData(images=images, shapes=shapes, tables=tables)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=str(out.parent)))
    try:
        target = tmp / out.name
        with _quiet():
            sdata.write(target)
        if out.exists():
            old = tmp / "previous"
            os.replace(out, old)
        os.replace(target, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _short(exc: Exception) -> str:
    msg = str(exc).strip()
    return (msg.splitlines()[0] if msg else type(exc).__name__)[:160]
