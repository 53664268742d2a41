"""Reader of Visium HD Space Ranger outputs: ``binned_outputs/square_XXXum/`` (and ``outs/`` above it).

A bin folder holds ``filtered_feature_bc_matrix.h5`` (or the MEX folder ``filtered_feature_bc_matrix/``;
``raw_*`` when there is no filtered matrix), ``spatial/tissue_positions.parquet`` (every bin of the
capture area: barcode, in_tissue, array_row, array_col, full-resolution pixel row and column),
``spatial/scalefactors_json.json`` (``bin_size_um``, ``microns_per_pixel``, image scale factors) and the
``tissue_hires_image.png`` / ``tissue_lowres_image.png`` images. Bins form a square lattice whose
pitch is the bin size: ``bin_size_um`` from the scale factors, else the folder name.

Given ``outs/`` (or the run folder above it) the bin size picks the folder: ``bin_um`` when given
(it must be one of those present), else 8 um (10x's recommended size), else the smallest present.
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..checks import positive_number
from ..errors import SlideError
from .slide import Slide

POSITIONS = "tissue_positions.parquet"
MATRICES = (
    "filtered_feature_bc_matrix.h5",
    "filtered_feature_bc_matrix",
    "raw_feature_bc_matrix.h5",
    "raw_feature_bc_matrix",
)
POSITION_COLUMNS = ("barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres")
#: Side of the area Visium HD array coordinates may span, in um (the capture area is 6.5 mm).
CAPTURE_AREA_UM = 8000.0
#: Bin size opened from ``outs/`` when none is given (10x's recommended bin size for analysis).
DEFAULT_HD_BIN_UM = 8.0
_BIN_DIR = re.compile(r"^square_(\d+)um$")


def bin_folders(outs: Path) -> dict[float, Path]:
    """``{bin size in um: square_XXXum folder}`` under ``outs/binned_outputs``."""
    base = outs / "binned_outputs"
    found = {}
    if base.is_dir():
        for d in sorted(base.iterdir()):
            m = _BIN_DIR.match(d.name)
            if m and d.is_dir():
                found[float(int(m.group(1)))] = d
    return found


def looks_like_visium_hd(p: Path) -> bool:
    """Cheap check: a Visium HD bin folder, ``outs/`` or run folder (no parsing)."""
    if not p.is_dir():
        return False
    if (p / "spatial" / POSITIONS).is_file() or _BIN_DIR.match(p.name):
        return True
    return bool(bin_folders(p) or bin_folders(p / "outs"))


def resolve_bin_folder(p: Path, bin_um: float | None) -> Path:
    """The ``square_XXXum`` folder to read for path ``p`` (see the module docstring)."""
    if (p / "spatial" / POSITIONS).is_file() or _BIN_DIR.match(p.name):
        if bin_um is not None:
            size = _folder_bin_um(p)
            if size is not None and abs(size - bin_um) > 1e-6:
                raise SlideError(
                    p,
                    f"this is the {size:g} um bin folder; --bin-um {bin_um:g} asks for another "
                    f"(open outs/ to choose among the bin sizes)",
                )
        return p
    for outs in (p, p / "outs"):
        found = bin_folders(outs)
        if not found:
            continue
        if bin_um is not None:
            hit = next((d for s, d in found.items() if abs(s - bin_um) < 1e-6), None)
            if hit is None:
                sizes = ", ".join(f"{s:g}" for s in found)
                raise SlideError(
                    outs / "binned_outputs",
                    f"no square_{int(round(bin_um)):03d}um bin folder (bin sizes here: {sizes} um)",
                )
            return hit
        if DEFAULT_HD_BIN_UM in found:
            return found[DEFAULT_HD_BIN_UM]
        sizes = ", ".join(f"{s:g}" for s in found)
        warnings.warn(
            f"{outs}: no {DEFAULT_HD_BIN_UM:g} um bins here; opening the {min(found):g} um ones (bin sizes here: "
            f"{sizes} um)",
            stacklevel=2,
        )
        return found[min(found)]
    raise SlideError(p, "not a Visium HD output (expected binned_outputs/square_XXXum/)")


def _folder_bin_um(d: Path) -> float | None:
    m = _BIN_DIR.match(d.name)
    return float(int(m.group(1))) if m else None


def read_visium_hd(path: Path, bin_um: float | None = None, pitch_um: float | None = None) -> Slide:
    """Read a Visium HD bin folder (or ``outs/``) as a slide on the square lattice of its bins.

    Raises
    ------
    SlideError
        Missing matrix, positions or scale factors, unreadable parquet or h5, barcodes of the
        matrix absent from the positions, images inconsistent with their scale factors.
    """
    from .io import IMAGE_NAMES, _make_slide, _read_image, _unique, read_10x_h5
    from .mex import is_mex_folder, read_10x_mex
    from .slide import check_counts

    d = resolve_bin_folder(Path(path), bin_um)
    spatial = d / "spatial"
    mfile = next((d / m for m in MATRICES if (d / m).is_file() or is_mex_folder(d / m)), None)
    if mfile is None:
        raise SlideError(
            d / MATRICES[0],
            "missing: a Visium HD bin folder needs a feature-barcode matrix "
            "(filtered_feature_bc_matrix.h5 or the filtered_feature_bc_matrix/ folder)",
        )
    pos_file = spatial / POSITIONS
    if not pos_file.is_file():
        raise SlideError(pos_file, "missing: a Visium HD bin folder needs the bins' positions")
    sf_file = spatial / "scalefactors_json.json"
    if not sf_file.is_file():
        raise SlideError(sf_file, "missing: a Visium HD bin folder needs its scale factors (bin size, images)")
    try:
        scalef = json.loads(sf_file.read_text(encoding="utf-8"))
        if not isinstance(scalef, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SlideError(sf_file, f"unreadable scale factors ({_short(exc)})") from None
    from .io import check_scalefactors

    scalef = check_scalefactors(scalef, sf_file)  # every *_scalef a positive number, like Space Ranger's
    for key in ("bin_size_um", "microns_per_pixel"):
        if key in scalef:
            positive_number(scalef[key], sf_file, key)
    size = _bin_size(scalef, d, sf_file)
    if mfile.is_dir():
        counts, names, ids, barcodes = read_10x_mex(mfile)
        library_id = None
    else:
        counts, names, ids, barcodes, library_id = read_10x_h5(mfile)
    pos = _read_positions(pos_file)
    _check_capture_area(pos, size, pos_file)
    where = pd.Index(pos.index).get_indexer(np.asarray(barcodes).astype(str))
    if (where < 0).any():
        raise SlideError(mfile, f"{int((where < 0).sum())} barcode(s) of the matrix are not in {POSITIONS}")
    check_counts(counts, str(mfile))
    pm = pos.iloc[where]

    images, factors = {}, {}
    for key, fname in IMAGE_NAMES.items():
        f = next((s / fname for s in (spatial, d.parent.parent / "spatial") if (s / fname).is_file()), None)
        if f is None:
            continue
        factor = scalef.get(f"tissue_{key}_scalef")
        if factor is None:
            warnings.warn(f"{f}: no tissue_{key}_scalef in {sf_file.name}; image ignored", stacklevel=2)
            continue
        images[key] = _read_image(f)
        factors[key] = float(factor)
    outs = d.parent.parent if d.parent.name == "binned_outputs" else None
    slide = _make_slide(
        path=d,
        counts=counts,
        genes=_unique(names),
        barcodes=np.asarray(barcodes),
        rows=pm["array_row"].to_numpy(),
        cols=pm["array_col"].to_numpy(),
        in_tissue=pm["in_tissue"].to_numpy() == 1,
        xy=pm[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(np.float64),
        images=images,
        factors=factors,
        spot_diameter=scalef.get("spot_diameter_fullres"),
        library_id=library_id or _library_name(outs, d),
        n_total=len(pos),
        pitch_um=pitch_um if pitch_um is not None else size,
        extent_checked=True,
    )
    slide.geometry = dataclasses.replace(slide.geometry, technology="visium_hd")
    mpp = scalef.get("microns_per_pixel")
    if isinstance(mpp, (int, float)) and mpp > 0 and slide.geometry.um_per_px and pitch_um is None:
        if abs(slide.geometry.um_per_px / float(mpp) - 1) > 0.05:
            warnings.warn(
                f"{sf_file}: microns_per_pixel {mpp:g} disagrees with the bins' positions "
                f"({slide.geometry.um_per_px:.4g} um/px for {size:g} um bins)",
                stacklevel=2,
            )
    slide.metadata.update({"gene_ids": ids, "scalefactors": scalef, "bin_um": size})
    return slide


def _check_capture_area(pos: pd.DataFrame, size: float, f: Path) -> None:
    """Array coordinates within a Visium HD capture area (6.5 mm; :data:`CAPTURE_AREA_UM` with margin).

    This bounds the grids laid out later (a sample of a few bins may span the whole area, so the
    generic "grid much larger than its spots" check does not apply).
    """
    limit = int(np.ceil(CAPTURE_AREA_UM / size))
    r, c = pos["array_row"].to_numpy(), pos["array_col"].to_numpy()
    if r.size and (min(r.min(), c.min()) < 0 or max(r.max(), c.max()) >= limit):
        raise SlideError(
            f,
            f"array coordinates {int(min(r.min(), c.min()))}..{int(max(r.max(), c.max()))} lie beyond a Visium HD "
            f"capture area ({limit} bins of {size:g} um)",
        )


def _library_name(outs: Path | None, d: Path) -> str:
    """The run's name: the folder above ``outs/`` (or the folder holding ``binned_outputs``)."""
    if outs is None:
        return d.name
    return outs.parent.name if outs.name == "outs" else outs.name


def _bin_size(scalef: dict, d: Path, sf_file: Path) -> float:
    size = scalef.get("bin_size_um")
    if isinstance(size, (int, float)) and not isinstance(size, bool) and size > 0:
        return float(size)
    size = _folder_bin_um(d)
    if size is None:
        raise SlideError(sf_file, "no bin_size_um, and the folder name is not square_XXXum")
    return size


def _read_positions(f: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = set(pq.ParquetFile(f).schema_arrow.names)
        missing = [c for c in POSITION_COLUMNS if c not in names]
        if missing:
            raise SlideError(f, f"no column {', '.join(missing)} in the positions table")
        df = pd.read_parquet(f, columns=list(POSITION_COLUMNS))
    except SlideError:
        raise
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise SlideError(f, f"unreadable parquet file ({_short(exc)})") from None
    for c in ("in_tissue", "array_row", "array_col"):
        if not np.issubdtype(df[c].dtype, np.integer):
            raise SlideError(f, f"column {c} is not integer")
    df["barcode"] = [b.decode() if isinstance(b, bytes) else str(b) for b in df["barcode"]]
    return df.set_index("barcode")


def _short(exc: Exception) -> str:
    msg = str(exc).strip()
    return (msg.splitlines()[0] if msg else type(exc).__name__)[:160]
