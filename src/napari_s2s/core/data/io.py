"""Readers: Space Ranger ``outs/`` folders and ``.h5ad`` files (scanpy/squidpy convention), and the
dispatch to the readers of today's platforms: Xenium folders (:mod:`.xenium`), Visium HD bin folders
(:mod:`.visium_hd`) and SpatialData ``.zarr`` stores (:mod:`.spatialdata_zarr`).

``read_slide(path)`` is the single entry point. Every problem with the input raises
:class:`~napari_s2s.core.errors.SlideError` with one line naming the file and the problem. Inputs are
only ever opened for reading.
"""

from __future__ import annotations

import json
import numbers
import warnings
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..checks import (
    MAX_PITCH_UM,
    as_mapping,
    check_array_coordinates,
    check_grid_extent,
    optional_positive_number,
    positive_number,
    warn_isolated_spots,
)
from ..errors import SlideError
from .lattice import build_geometry, recover_grid
from .slide import Slide, check_counts

MATRIX_NAMES = ("filtered_feature_bc_matrix.h5", "raw_feature_bc_matrix.h5")
POSITION_NAMES = ("tissue_positions.csv", "tissue_positions_list.csv")
IMAGE_NAMES = {"hires": "tissue_hires_image.png", "lowres": "tissue_lowres_image.png"}
#: Scale-factor keys of 10x ``scalefactors_json.json`` that must hold positive numbers when present (any
#: other ``*_scalef`` key too).
SCALEFACTOR_KEYS = ("spot_diameter_fullres", "fiducial_diameter_fullres")
#: Pixel positions beyond this magnitude are not pixels of any image.
MAX_PIXEL_COORD = 1e9


class NotASlide(SlideError):
    """The path is readable but is not a slide at all (e.g. a README next to the data)."""


def is_slide_path(path: str | Path) -> bool:
    """Cheap check (no parsing): does ``path`` look like something :func:`read_slide` handles?

    SpatialData stores count only when they hold a table (napari-spatialdata opens the others).
    """
    p = Path(path)
    if _platform(p, strict=True) is not None:
        return True
    if p.is_dir():
        return _spaceranger_root(p) is not None
    return p.suffix.lower() == ".h5ad"


def _platform(p: Path, strict: bool = False) -> str | None:
    """``"visium_hd"``, ``"xenium"`` or ``"spatialdata"`` when ``p`` looks like one (no parsing)."""
    from .spatialdata_zarr import looks_like_spatialdata
    from .visium_hd import looks_like_visium_hd
    from .xenium import xenium_root

    if looks_like_visium_hd(p):
        return "visium_hd"
    if xenium_root(p) is not None:
        return "xenium"
    if looks_like_spatialdata(p, with_table=strict):
        return "spatialdata"
    return None


def _slides_inside(folder: Path) -> list[str]:
    """Names of the entries directly in ``folder`` that are slides (a folder of samples)."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [e.name for e in entries if not e.name.startswith(".") and is_slide_path(e)]


def read_slide(
    path: str | Path, pitch_um: float | None = None, *, bin_um: float | None = None, counts_from: str = "auto"
) -> Slide:
    """Read a slide: a Space Ranger ``outs/`` folder, an ``.h5ad`` file, a Xenium output folder, a
    Visium HD bin folder (or its ``outs/``), or a SpatialData ``.zarr`` store.

    Parameters
    ----------
    path
        The folder or file.
    pitch_um
        Centre-to-centre spot pitch in micrometres, to override the technology's default (needed
        to get micrometres on slides whose technology cannot be recognised).
    bin_um
        Bin size in micrometres: of the square bins Xenium cells or transcripts (and SpatialData
        tables of cells) are counted in (default 50), or the Visium HD bin folder to open from
        ``outs/`` (default 8). Not used by other formats.
    counts_from
        Xenium (and SpatialData cells): ``"cells"``, ``"transcripts"`` or ``"auto"`` (see
        :mod:`.xenium`).

    Raises
    ------
    SlideError
        Missing path, unreadable or corrupt file, a missing required file, no spatial coordinates,
        coordinates on no lattice, NaN or negative counts, images inconsistent with their scale
        factors, a bin size that is not a positive number.
    """
    p = Path(path)
    pitch_um = optional_positive_number(pitch_um, p, "pitch_um (spot pitch in micrometres)", upper=MAX_PITCH_UM)
    if not p.exists():
        raise SlideError(p, "no such file or folder")
    if bin_um is not None:
        from .binning import check_bin_um

        bin_um = check_bin_um(bin_um, p)
    platform = _platform(p)
    if platform is not None:
        slide = _read_platform(platform, p, pitch_um, bin_um, counts_from)
    elif p.is_dir():
        root = _spaceranger_root(p)
        if root is None:
            inside = _slides_inside(p)
            if len(inside) == 1:
                raise NotASlide(p, f"the slide is the folder inside, {inside[0]}: open that")
            if inside:
                names = ", ".join(inside[:3]) + (f" and {len(inside) - 3} more" if len(inside) > 3 else "")
                raise NotASlide(
                    p,
                    f"folder holds {len(inside)} slides ({names}), not one: "
                    "open one of them, or impute them all with `napari-s2s batch`",
                )
            raise NotASlide(
                p,
                "folder is not a slide: expected a Space Ranger output (filtered_feature_bc_matrix.h5 or "
                "raw_feature_bc_matrix.h5 and spatial/tissue_positions*.csv), a Visium HD or Xenium output "
                "folder, or a SpatialData .zarr store with a table",
            )
        slide = _read_spaceranger(root, pitch_um)
    elif p.suffix.lower() == ".h5ad":
        slide = _read_h5ad(p, pitch_um)
    else:
        raise NotASlide(
            p,
            "not a slide: expected a Space Ranger outs/ folder, an .h5ad file, a Xenium or Visium HD "
            "output folder, or a SpatialData .zarr store",
        )
    if bin_um is not None and platform is None:
        warnings.warn(f"{p}: the bin size applies to Xenium, Visium HD and SpatialData only; ignored", stacklevel=2)
    if counts_from != "auto" and platform not in ("xenium", "spatialdata"):
        warnings.warn(f"{p}: --bin-from applies to Xenium and SpatialData cells only; ignored", stacklevel=2)
    if pitch_um is not None and platform == "xenium":
        warnings.warn(f"{p}: Xenium bins are --bin-um apart; --pitch-um ignored", stacklevel=2)
    slide.source = slide.source or str(p)
    return slide


def _read_platform(platform: str, p: Path, pitch_um, bin_um, counts_from) -> Slide:
    if platform == "visium_hd":
        from .visium_hd import read_visium_hd

        return read_visium_hd(p, bin_um=bin_um, pitch_um=pitch_um)
    if platform == "xenium":
        from .xenium import read_xenium

        return read_xenium(p, bin_um=bin_um, counts_from=counts_from)
    from .spatialdata_zarr import read_spatialdata

    return read_spatialdata(p, bin_um=bin_um, pitch_um=pitch_um, counts_from=counts_from)


# ---------------------------------------------------------------------- Space Ranger
def _spaceranger_root(p: Path) -> Path | None:
    for cand in (p, p / "outs"):
        has_matrix = any((cand / m).is_file() for m in MATRIX_NAMES)
        has_pos = any((cand / "spatial" / n).is_file() for n in POSITION_NAMES)
        if has_matrix and has_pos:
            return cand
    return None


def read_10x_h5(path: Path) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray, str | None]:
    """Read a 10x HDF5 feature-barcode matrix (v3 schema, or the older per-genome schema).

    Returns ``(counts (barcodes x genes) CSR, gene names, gene ids, barcodes, library id)``; only
    "Gene Expression" features are kept when feature types are present.
    """
    try:
        with h5py.File(path, "r") as f:
            if "matrix" in f:
                g = f["matrix"]
                feats = g["features"]
                names = _strs(feats["name"][:])
                ids = _strs(feats["id"][:]) if "id" in feats else names
                ftype = _strs(feats["feature_type"][:]) if "feature_type" in feats else None
            else:  # Cell Ranger 2 schema: one group per genome
                key = next(iter(f.keys()))
                g = f[key]
                names = _strs(g["gene_names"][:])
                ids = _strs(g["genes"][:])
                ftype = None
            data = g["data"].astype(np.float32)[()]  # converted while read: no copy of the integers
            indices = _index_array(g["indices"], np.int32)  # gene indices: int32 whatever the file stores
            indptr = _index_array(g["indptr"], np.int64)
            shape = tuple(int(s) for s in g["shape"][:])
            barcodes = _strs(g["barcodes"][:])
            lib = f.attrs.get("library_ids")
            library_id = _strs(np.atleast_1d(lib))[0] if lib is not None and len(np.atleast_1d(lib)) else None
    except Exception as exc:  # h5py raises many types on corrupt or foreign files
        raise SlideError(path, f"not a readable 10x HDF5 matrix ({_short(exc)})") from None
    if len(shape) != 2 or shape[0] != len(names) or shape[1] != len(barcodes):
        raise SlideError(
            path,
            f"corrupt 10x HDF5 matrix (shape {list(shape)} does not match {len(names)} features x "
            f"{len(barcodes)} barcodes)",
        )
    if (ftype is not None and len(ftype) != len(names)) or len(ids) != len(names):
        raise SlideError(path, "corrupt 10x HDF5 matrix (feature tables of different lengths)")
    if data.dtype.kind not in "biuf" or indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu":
        raise SlideError(path, "corrupt 10x HDF5 matrix (data, indices or indptr is not numeric)")
    try:
        csc = sp.csc_matrix((data, indices, indptr), shape=shape)  # data read as float32 already
        csc.check_format(full_check=True)
        mat = csc.T.tocsr()
    except Exception as exc:
        raise SlideError(path, f"corrupt 10x HDF5 matrix ({_short(exc)})") from None
    if ftype is not None:
        keep = ftype == "Gene Expression"
        if keep.any() and not keep.all():
            mat, names, ids = mat[:, keep], names[keep], ids[keep]
    return mat, names, ids, barcodes, library_id


def _index_array(ds, dtype) -> np.ndarray:
    """An index dataset as integers (converted while read); float indices holding whole numbers, as
    real files written from R hold them (the shared Xenium folder), are integers too."""
    if ds.dtype.kind in "iu":
        return ds.astype(dtype)[()]
    raw = ds[()]
    if raw.dtype.kind == "f" and np.all(np.isfinite(raw)) and np.array_equal(raw, np.round(raw)):
        return raw.astype(dtype)
    return raw  # not integers: reported as corrupt below


def _read_positions(spatial: Path) -> pd.DataFrame:
    cols = ["barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]
    for name in POSITION_NAMES:
        f = spatial / name
        if not f.is_file():
            continue
        try:
            with open(f, encoding="utf-8") as fh:
                first = fh.readline()
            header = 0 if first.lower().startswith("barcode") else None
            df = pd.read_csv(f, header=header)
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise SlideError(f, f"unreadable positions table ({_short(exc)})") from None
        if df.shape[1] != 6:
            raise SlideError(f, f"positions table has {df.shape[1]} columns, expected 6 ({', '.join(cols)})")
        df.columns = cols
        for c in cols[1:4]:
            if not np.issubdtype(df[c].dtype, np.integer):
                raise SlideError(f, f"column {c} is not integer")
        for c in cols[4:]:
            if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]):
                raise SlideError(f, f"column {c} is not numeric")
        bad = ~df["in_tissue"].isin((0, 1))
        if bad.any():
            raise SlideError(f, f"column in_tissue must be 0 or 1, found {df['in_tissue'][bad].iloc[0]!r}")
        df["barcode"] = df["barcode"].astype(str)
        dup = df["barcode"].duplicated()
        if dup.any():
            raise SlideError(f, f"{int(dup.sum())} duplicated barcode(s), e.g. {df['barcode'][dup].iloc[0]!r}")
        return df.set_index("barcode")
    raise SlideError(spatial, "no tissue_positions.csv or tissue_positions_list.csv")


def _read_spaceranger(root: Path, pitch_um: float | None) -> Slide:
    spatial = root / "spatial"
    mfile = next(root / m for m in MATRIX_NAMES if (root / m).is_file())
    counts, names, ids, barcodes, library_id = read_10x_h5(mfile)
    pos = _read_positions(spatial)
    missing = ~pd.Index(barcodes).isin(pos.index)
    if missing.any():
        raise SlideError(mfile, f"{int(missing.sum())} barcode(s) of the matrix are not in the positions table")
    pos_m = pos.loc[barcodes]
    check_counts(counts, str(mfile))

    sf_file = spatial / "scalefactors_json.json"
    scalef: dict = {}
    if sf_file.is_file():
        try:
            raw = json.loads(sf_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SlideError(sf_file, f"unreadable scale factors ({_short(exc)})") from None
        if not isinstance(raw, dict):
            raise SlideError(sf_file, f"scale factors must be a JSON object, not {json.dumps(raw)[:40]}")
        scalef = check_scalefactors(raw, sf_file)
    images, factors = {}, {}
    for key, fname in IMAGE_NAMES.items():
        f = spatial / fname
        if not f.is_file():
            continue
        factor = scalef.get(f"tissue_{key}_scalef")
        if factor is None:
            warnings.warn(f"{f}: no tissue_{key}_scalef in scalefactors_json.json; image ignored", stacklevel=2)
            continue
        images[key] = _read_image(f)
        factors[key] = factor

    xy = pos_m[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(np.float64)
    genes = _unique(names)
    slide = _make_slide(
        path=root,
        counts=counts,
        genes=genes,
        barcodes=np.asarray(barcodes),
        rows=pos_m["array_row"].to_numpy(),
        cols=pos_m["array_col"].to_numpy(),
        in_tissue=pos_m["in_tissue"].to_numpy() == 1,
        xy=xy,
        images=images,
        factors=factors,
        spot_diameter=scalef.get("spot_diameter_fullres"),
        library_id=library_id or (root.parent.name if root.name == "outs" else root.name),
        n_total=len(pos),
        pitch_um=pitch_um,
    )
    slide.metadata["gene_ids"] = ids
    slide.metadata["scalefactors"] = scalef
    return slide


# ---------------------------------------------------------------------- h5ad
def _read_h5ad(path: Path, pitch_um: float | None) -> Slide:
    import anndata

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            adata = anndata.read_h5ad(path)
    except Exception as exc:  # anndata raises many types on corrupt input
        raise SlideError(path, f"not a readable .h5ad file ({_short(exc)})") from None

    use_layer = "counts" in adata.layers
    x = adata.layers["counts"] if use_layer else adata.X
    if x is None or adata.n_vars == 0:
        raise SlideError(path, "no count matrix (X is empty)")
    counts = _count_matrix(x, path, "layers['counts']" if use_layer else "X")
    check_counts(counts, str(path))
    # an imputed result written by napari-s2s holds log-normalised values, not counts
    imputed = isinstance(adata.uns.get("s2s"), dict) and "s2s_measured" in adata.obs
    if counts.nnz and not imputed and not np.allclose(counts.data[:100000], np.round(counts.data[:100000])):
        warnings.warn(
            f"{path}: counts are not integers; the input looks normalised already (going on)",
            stacklevel=2,
        )

    obs = adata.obs
    if "in_tissue" in obs:
        in_tissue = _flags(obs["in_tissue"], path, "obs['in_tissue']")
    else:
        in_tissue = np.ones(adata.n_obs, bool)
    xy = None
    if "spatial" in adata.obsm:
        try:
            xy = np.asarray(adata.obsm["spatial"], dtype=np.float64)
        except (TypeError, ValueError):
            raise SlideError(path, "obsm['spatial'] is not numeric: expected (x, y) pixel positions") from None
        if xy.ndim != 2 or xy.shape[1] < 2:
            raise SlideError(path, "obsm['spatial'] must be an (n_obs, 2) array of (x, y) pixels")
        xy = xy[:, :2]
        if (np.abs(xy[np.isfinite(xy)]) > MAX_PIXEL_COORD).any():
            raise SlideError(path, f"obsm['spatial'] holds pixel positions beyond {MAX_PIXEL_COORD:.0e}")

    rows = cols = None
    for rkey, ckey in (("array_row", "array_col"), ("row", "col")):
        if rkey in obs and ckey in obs:
            r = _numbers(obs[rkey])
            c = _numbers(obs[ckey])
            if not (np.isfinite(r).all() and np.isfinite(c).all()):
                raise SlideError(path, f"obs['{rkey}'|'{ckey}'] has missing or non-numeric values")
            if not (np.allclose(r, np.round(r)) and np.allclose(c, np.round(c))):
                raise SlideError(
                    path,
                    f"obs['{rkey}'|'{ckey}'] are not integers: coordinates are not on a spot lattice "
                    "(bead- or cell-level data such as Slide-seq is not supported)",
                )
            rows, cols = check_array_coordinates(r, c, path, f"obs['{rkey}'|'{ckey}']")
            break
    if rows is None:
        if xy is None:
            raise SlideError(path, "no spatial coordinates (need obs['array_row'|'array_col'] or obsm['spatial'])")
        ok = np.isfinite(xy).all(axis=1)
        if not ok.all():
            raise SlideError(path, f"{int((~ok).sum())} spot(s) have no pixel position and no array coordinates")
        try:
            with np.errstate(all="ignore"):
                rows, cols = recover_grid(xy)
        except (ValueError, ArithmeticError) as exc:  # LinAlgError is a ValueError
            raise SlideError(path, str(exc) or "pixel positions are not on a square or hex lattice") from None

    images, factors, spot_diam, library_id = {}, {}, None, None
    if "spatial" in adata.uns:
        spatial = as_mapping(adata.uns["spatial"], path, "uns['spatial']", optional=False)
        if spatial:
            # libraries are the mappings (some tools add flags such as 'is_single' beside them)
            libs = [k for k, v in spatial.items() if isinstance(v, Mapping)] or list(spatial.keys())
            library_id = str(libs[0])
            if len(libs) > 1:
                warnings.warn(f"{path}: {len(libs)} libraries in uns['spatial']; using '{library_id}'", stacklevel=2)
            where = f"uns['spatial']['{library_id}']"
            lib = as_mapping(spatial[libs[0]], path, where, optional=False)
            sfs = check_scalefactors(
                as_mapping(lib.get("scalefactors"), path, f"{where}['scalefactors']"), path, f"{where}['scalefactors']"
            )
            spot_diam = sfs.get("spot_diameter_fullres")
            for key, img in as_mapping(lib.get("images"), path, f"{where}['images']").items():
                factor = sfs.get(f"tissue_{key}_scalef")
                if factor is None:
                    warnings.warn(f"{path}: image '{key}' has no tissue_{key}_scalef; ignored", stacklevel=2)
                    continue
                images[str(key)] = _as_rgb_uint8(img, path, key)
                factors[str(key)] = factor

    slide = _make_slide(
        path=path,
        counts=counts,
        genes=_unique(np.asarray(adata.var_names).astype(str)),
        barcodes=np.asarray(adata.obs_names).astype(str),
        rows=rows,
        cols=cols,
        in_tissue=in_tissue,
        xy=xy,
        images=images,
        factors=factors,
        spot_diameter=spot_diam,
        library_id=library_id,
        n_total=adata.n_obs,
        pitch_um=pitch_um if pitch_um is not None or not imputed else _dense_pitch(adata.uns["s2s"], path),
    )
    if imputed:
        slide.values_are_lognorm = True
        slide.metadata["s2s"] = dict(adata.uns["s2s"])
        slide.metadata["s2s_measured"] = _flags(adata.obs["s2s_measured"], path, "obs['s2s_measured']")
    return slide


def _dense_pitch(prov: dict, path) -> float | None:
    """Pitch of an imputed x2 grid: half the source's (recorded in the provenance), if known."""
    src = prov.get("pitch_um")
    if src is None or (isinstance(src, str) and src.lower() == "none"):
        return None
    return positive_number(src, path, "uns['s2s']['pitch_um']") / 2.0


def _count_matrix(x, path, field: str) -> sp.csr_matrix:
    """A numeric (spots x genes) matrix as float32 CSR; non-numeric or out-of-range values are bad input."""
    try:
        m = sp.csr_matrix(x) if sp.issparse(x) else sp.csr_matrix(np.asarray(x))
    except Exception as exc:
        raise SlideError(path, f"{field} is not a count matrix ({_short(exc)})") from None
    if m.ndim != 2 or m.dtype.kind not in "biuf":
        raise SlideError(path, f"{field} holds {m.dtype} values, expected numbers (counts)")
    data = m.data
    if data.dtype.kind == "f" and data.size:
        finite = np.isfinite(data)
        if finite.any() and np.abs(data[finite]).max() > np.finfo(np.float32).max:
            big = float(np.abs(data[finite]).max())
            raise SlideError(path, f"{field} holds values beyond float32 range (largest {big:.3g})")
    return sp.csr_matrix(m, dtype=np.float32)


def _numbers(col) -> np.ndarray:
    """A column of obs as float64, non-numbers -> NaN (categorical and object columns included)."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return np.asarray(col, dtype=np.float64)
    values = pd.Series(np.asarray(col, dtype=object))
    return pd.to_numeric(values, errors="coerce").to_numpy(np.float64, na_value=np.nan)


_FLAG_WORDS = {"1": 1, "0": 0, "true": 1, "false": 0}


def _flag_number(v):
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, str):
        return _FLAG_WORDS.get(v.strip().lower(), np.nan)
    return v


def _flags(col, path, field: str) -> np.ndarray:
    """A 0/1 (or True/False) column as bool; NaN and other values are bad input, never "in tissue"."""
    if pd.api.types.is_bool_dtype(col):
        return np.asarray(col, dtype=bool)
    values = pd.Series(np.asarray(col, dtype=object))
    num = pd.to_numeric(values.map(_flag_number), errors="coerce").to_numpy(np.float64, na_value=np.nan)
    bad = ~np.isin(num, (0.0, 1.0))
    if bad.any():
        missing = values.isna().to_numpy()
        if (missing | ~bad).all():
            what = f"{int(missing.sum())} missing (NaN) value(s)"
        else:
            what = f"{int(bad.sum())} value(s) other than 0/1, e.g. {values[bad & ~missing].iloc[0]!r}"
        raise SlideError(path, f"{field} has {what}; expected 0/1 (or True/False) for every spot")
    return num == 1.0


def check_scalefactors(sfs: dict, path, where: str = "") -> dict:
    """Validated copy of 10x scale factors: every ``*_scalef`` and :data:`SCALEFACTOR_KEYS` value must be a
    positive finite number (returned as ``float``). Other keys are kept when they hold a plain number and
    dropped otherwise (they are carried into results, which must stay writable).

    Parameters
    ----------
    sfs
        The scale-factor mapping (``scalefactors_json.json`` or ``uns['spatial'][lib]['scalefactors']``).
    path
        File named in errors.
    where
        Prefix naming the mapping in errors (``"uns['spatial']['lib']['scalefactors']"``), or ``""``.
    """
    out = {}
    for k, v in sfs.items():
        key = str(k)
        field = f"{where}['{key}']" if where else key
        if key.endswith("_scalef") or key in SCALEFACTOR_KEYS:
            out[key] = positive_number(v, path, field)
        elif isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and np.isfinite(float(v)):
            out[key] = float(v)
    return out


# ---------------------------------------------------------------------- shared
def _make_slide(
    *,
    path: Path,
    counts: sp.csr_matrix,
    genes: np.ndarray,
    barcodes: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    in_tissue: np.ndarray,
    xy: np.ndarray | None,
    images: dict,
    factors: dict,
    spot_diameter,
    library_id: str | None,
    n_total: int,
    pitch_um: float | None,
    extent_checked: bool = False,
) -> Slide:
    """``extent_checked``: the reader checked the grid's extent against a table of every lattice position
    (Visium HD's positions: a sample of a few bins spans the whole capture area)."""
    if not in_tissue.any():
        raise SlideError(path, "no spot is in tissue")
    rows, cols = check_array_coordinates(rows, cols, path)
    if not extent_checked:
        check_grid_extent(rows, cols, path)
        warn_isolated_spots(rows, cols, path)
    spot_diameter = optional_positive_number(spot_diameter, path, "spot_diameter_fullres")
    if np.unique(np.stack([rows, cols], 1), axis=0).shape[0] != rows.size:  # negative coordinates allowed
        raise SlideError(path, "several spots share the same array coordinates")
    # geometry from in-tissue spots (off-tissue spots may lack pixel positions)
    t = in_tissue
    if xy is not None and not np.isfinite(xy[t]).all(axis=1).any():
        xy = None
    try:
        with np.errstate(all="ignore"):
            geometry = build_geometry(rows[t], cols[t], None if xy is None else xy[t], pitch_um=pitch_um)
    except (ValueError, ArithmeticError) as exc:
        raise SlideError(path, str(exc)) from None
    if xy is not None:
        _check_images(path, xy[t], images, factors, geometry.pitch_px)
    return Slide(
        counts=counts,
        genes=genes,
        barcodes=barcodes,
        array_row=rows,
        array_col=cols,
        in_tissue=in_tissue,
        pixel_xy=xy,
        images=images,
        scalefactors=factors,
        spot_diameter_px=None if spot_diameter is None else float(spot_diameter),
        geometry=geometry,
        library_id=library_id,
        n_spots_total=int(n_total),
    )


def _check_images(path: Path, xy: np.ndarray, images: dict, factors: dict, pitch_px: float | None) -> None:
    ok = np.isfinite(xy).all(axis=1)
    pts = xy[ok]
    margin = 0.5 * (pitch_px or 0.0)
    for key, img in images.items():
        s = factors[key]
        h, w = img.shape[:2]
        lo = (pts - margin) * s
        hi = (pts + margin) * s
        inside = (hi[:, 0] >= 0) & (lo[:, 0] <= w) & (hi[:, 1] >= 0) & (lo[:, 1] <= h)
        if not inside.all():
            raise SlideError(
                path,
                f"image '{key}' ({w}x{h} px) is inconsistent with its scale factor {s:g}: "
                f"{int((~inside).sum())} of {len(pts)} spots fall outside it",
            )


def _read_image(f: Path) -> np.ndarray:
    """Read a PNG/JPEG/TIFF H&E (first frame) as (H, W, 3) uint8; the file is closed before returning."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. PIL's warnings on odd metadata chunks
            with Image.open(f) as im:
                if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                    img = np.array(im)  # 16-bit / float grey: scaled by _as_rgb_uint8
                else:
                    img = np.array(im.convert("RGB"))
    except Exception as exc:  # PIL raises many types on corrupt or foreign files
        raise SlideError(f, f"unreadable image ({_short(exc)})") from None
    return _as_rgb_uint8(img, f, f.stem)


def _as_rgb_uint8(img, path, key) -> np.ndarray:
    """(H, W, 3) uint8 from a grey, grey+alpha, RGB or RGBA image of any numeric dtype (values in [0, 1] are
    taken as fractions, values above 255 are scaled to the maximum); anything else is bad input."""
    try:
        img = np.asarray(img)
    except Exception as exc:
        raise SlideError(path, f"image '{key}' is not an array ({_short(exc)})") from None
    if img.dtype.kind not in "biuf":
        raise SlideError(path, f"image '{key}' holds {img.dtype} values, expected numbers")
    if img.ndim == 3 and img.shape[2] in (1, 2):  # grey (+ alpha)
        img = img[..., 0]
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.shape[0] < 1 or img.shape[1] < 1:
        raise SlideError(path, f"image '{key}' has shape {img.shape}, expected (H, W, 3)")
    img = img[..., :3]
    if img.dtype != np.uint8:
        f = img.astype(np.float64)
        finite = np.isfinite(f)
        if not finite.any():
            raise SlideError(path, f"image '{key}' has no finite pixel value (all NaN or infinite)")
        hi = float(f[finite].max())
        f[~finite] = 0.0
        if hi <= 1.0 + 1e-6:
            f = f * 255.0
        elif hi > 255:
            f = f / hi * 255.0
        img = np.clip(f, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def _strs(a) -> np.ndarray:
    return np.array(
        [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in np.asarray(a).ravel()], dtype=object
    )


def _unique(names: np.ndarray) -> np.ndarray:
    """Make names unique like ``AnnData.var_names_make_unique`` (``A``, ``A-1``, ...)."""
    from anndata.utils import make_index_unique

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(make_index_unique(pd.Index(np.asarray(names).astype(str)))).astype(str)


def _short(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg[:160]
