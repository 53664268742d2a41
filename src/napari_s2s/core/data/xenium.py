"""Reader of 10x Xenium output folders (Xenium Onboard Analysis 1.x-3.x layout).

Xenium decodes single transcripts at sub-micron positions; S2S-ST works on a lattice, so the slide
is made of square bins of ``bin_um`` micrometres (:mod:`.binning`, default 50 um) filled from either

* ``"cells"``: ``cell_feature_matrix.h5`` (or its MEX folder ``cell_feature_matrix/``), each cell's
  counts at its centroid from ``cells.parquet`` (else ``cells.csv.gz``). These are 10x's own counts
  (transcripts with qv >= 20 assigned to cells) and read in seconds on a full section; or
* ``"transcripts"``: ``transcripts.parquet`` (else ``transcripts.csv.gz`` / ``.csv``), every decoded
  transcript with qv >= 20 at its own position, those outside segmented cells too. Streamed in
  batches (memory bounded by the binned counts, not by the file's hundreds of millions of rows).

``"auto"`` takes cells when the matrix and a cells table are there, else transcripts. Control probes
and codewords (``NegControlProbe_*``, ``NegControlCodeword_*``, ``BLANK_*``, ``UnassignedCodeword_*``,
``DeprecatedCodeword_*``, ``Intergenic*``, ``antisense_*``) are never genes: feature types in the h5,
names (and ``is_gene`` when the table has it) in transcripts.

Coordinates are micrometres from the top-left corner of the morphology image; ``pixel_size`` in
``experiment.xenium`` (um per pixel) makes the slide's full-resolution pixels the morphology image's
pixels. The image (DAPI: ``morphology_focus``, else ``morphology_mip``) is read at the pyramid level
whose longer side is at most 4,096 pixels (:mod:`.pyramid`).

Real quirks handled: tables written from R carry a leading unnamed row-number column (ignored);
``cells.parquet`` is preferred to ``cells.csv.gz`` (a real folder exists whose two tables list other
cells); transcript feature names stored as bytes are decoded; cell ids may be integers or strings.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..checks import positive_number
from ..errors import SlideError
from .binning import DEFAULT_BIN_UM, MIN_QV, TranscriptBinner, bin_cells, bin_centres_px, check_bin_um, is_control
from .slide import Slide

EXPERIMENT = "experiment.xenium"
MATRIX_H5 = "cell_feature_matrix.h5"
MATRIX_MEX = "cell_feature_matrix"
CELL_TABLES = ("cells.parquet", "cells.csv.gz", "cells.csv")
TRANSCRIPT_TABLES = ("transcripts.parquet", "transcripts.csv.gz", "transcripts.csv")
#: Morphology images, in order of preference (XOA >= 2 writes ``morphology_focus/`` with one file per stain).
IMAGES = ("morphology_focus", "morphology_focus.ome.tif", "morphology_mip.ome.tif")
COUNTS_FROM = ("auto", "cells", "transcripts")
#: Rows per batch when streaming transcripts.
BATCH_ROWS = 4_000_000


def xenium_root(p: Path) -> Path | None:
    """The Xenium folder ``p`` names (the folder, or its ``experiment.xenium``), or ``None``.

    A folder "looks like" Xenium with ``experiment.xenium`` or with Xenium's tables (a cells or
    transcripts table, or ``cell_feature_matrix.h5``); :func:`read_xenium` then says what is missing.
    """
    if p.is_file() and p.name.endswith(".xenium"):
        return p.parent
    if not p.is_dir():
        return None
    if (p / EXPERIMENT).is_file():
        return p
    tables = (*CELL_TABLES, *TRANSCRIPT_TABLES, MATRIX_H5)
    if any((p / n).is_file() for n in tables) and not (p / "spatial").is_dir():
        return p
    return None


def _first(root: Path, names) -> Path | None:
    return next((root / n for n in names if (root / n).exists()), None)


def read_experiment(root: Path) -> dict:
    """``experiment.xenium`` as a dict, with a positive ``pixel_size`` (um per pixel)."""
    f = root / EXPERIMENT
    if not f.is_file():
        raise SlideError(f, "missing: a Xenium output folder needs experiment.xenium (it gives the pixel size)")
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SlideError(f, f"unreadable experiment file ({_short(exc)})") from None
    if not isinstance(meta, dict):
        raise SlideError(f, "experiment file is not a JSON object")
    if meta.get("pixel_size") is None:
        raise SlideError(f, "no pixel_size (micrometres per pixel of the morphology image)")
    meta["pixel_size"] = positive_number(meta["pixel_size"], f, "pixel_size (micrometres per pixel)")
    return meta


def read_xenium(path: Path, bin_um: float | None = None, counts_from: str = "auto") -> Slide:
    """Read a Xenium output folder as a slide of square bins (see the module docstring).

    Parameters
    ----------
    path
        The output folder (or its ``experiment.xenium``).
    bin_um
        Bin size in micrometres (default :data:`~napari_s2s.core.data.binning.DEFAULT_BIN_UM`).
    counts_from
        ``"auto"``, ``"cells"`` or ``"transcripts"``.

    Raises
    ------
    SlideError
        A required file is missing or unreadable, a bad bin size, nothing left to count.
    """
    root = xenium_root(Path(path)) or Path(path)
    bin_um = check_bin_um(DEFAULT_BIN_UM if bin_um is None else bin_um, root)
    if counts_from not in COUNTS_FROM:
        raise SlideError(root, f"counts_from must be one of {', '.join(COUNTS_FROM)}, not {counts_from!r}")
    meta = read_experiment(root)
    um_per_px = float(meta["pixel_size"])
    matrix = _first(root, (MATRIX_H5, MATRIX_MEX))
    cells = _first(root, CELL_TABLES)
    transcripts = _first(root, TRANSCRIPT_TABLES)
    source = counts_from
    if counts_from == "auto":
        if matrix is not None and cells is not None:
            source = "cells"
        elif transcripts is not None:
            source = "transcripts"
        else:
            missing = MATRIX_H5 if matrix is None else CELL_TABLES[0]
            raise SlideError(
                root / (TRANSCRIPT_TABLES[0] if matrix is None and cells is None else missing),
                "missing: a Xenium folder needs transcripts.parquet (or .csv.gz), or cell_feature_matrix.h5 "
                "with cells.parquet (or cells.csv.gz)",
            )
    if source == "cells":
        if matrix is None:
            raise SlideError(root / MATRIX_H5, "missing: binning cells needs the cell-feature matrix")
        if cells is None:
            raise SlideError(root / CELL_TABLES[0], "missing: binning cells needs the cells table (centroids)")
        rows, cols, counts, genes, n_items = _bin_cells(matrix, cells, bin_um)
        item_file = matrix
    else:
        if transcripts is None:
            raise SlideError(root / TRANSCRIPT_TABLES[0], "missing: binning transcripts needs the transcripts table")
        rows, cols, counts, genes, n_items = _bin_transcripts(transcripts, bin_um)
        item_file = transcripts
    if counts.shape[0] == 0 or counts.shape[1] == 0:
        raise SlideError(
            item_file,
            f"nothing to count: no gene {'cell' if source == 'cells' else 'transcript'} "
            f"with a position (controls and qv < {MIN_QV:g} are left out)",
        )
    images, factors = _read_morphology(root)
    slide = make_binned_slide(
        path=item_file,
        rows=rows,
        cols=cols,
        counts=counts,
        genes=genes,
        bin_um=bin_um,
        um_per_px=um_per_px,
        images=images,
        factors=factors,
        technology="xenium",
        library_id=root.name,
    )
    slide.source = str(root)
    if images:
        slide.metadata["image_label"] = "morphology (DAPI)"
    slide.metadata.update(
        {
            "counts_from": source,
            "n_cells" if source == "cells" else "n_transcripts": int(n_items),
            "xenium": {
                k: meta[k]
                for k in ("run_name", "region_name", "panel_name", "analysis_sw_version")
                if isinstance(meta.get(k), str)
            },
        }
    )
    return slide


def make_binned_slide(
    *,
    path: Path,
    rows: np.ndarray,
    cols: np.ndarray,
    counts: sp.csr_matrix,
    genes: np.ndarray,
    bin_um: float,
    um_per_px: float,
    images: dict,
    factors: dict,
    technology: str,
    library_id: str | None,
    origin_px: tuple[float, float] = (0.0, 0.0),
) -> Slide:
    """A slide of square bins: bin ``(row, col)`` is centred at ``((col + .5) b, (row + .5) b)`` um,
    i.e. ``/ um_per_px`` full-resolution pixels minus ``origin_px`` (x, y); pitch = ``bin_um``; every
    bin is "in tissue". The geometry is exact (nothing is fitted), even for a single bin."""
    from .io import _check_images, _unique
    from .lattice import Geometry
    from .slide import check_counts

    check_counts(counts, str(path))
    step = bin_um / um_per_px
    affine = np.array([[0.0, step, 0.5 * step - origin_px[0]], [step, 0.0, 0.5 * step - origin_px[1]]])
    xy = bin_centres_px(rows, cols, bin_um, um_per_px) - np.asarray(origin_px, np.float64)
    if images:
        _check_images(path, xy, images, factors, step)
    slide = Slide(
        counts=counts,
        genes=_unique(np.asarray(genes).astype(str)),
        barcodes=np.array([f"bin_{r}_{c}" for r, c in zip(rows.tolist(), cols.tolist())], dtype=object),
        array_row=rows,
        array_col=cols,
        in_tissue=np.ones(len(rows), bool),
        pixel_xy=xy,
        images=images,
        scalefactors=factors,
        spot_diameter_px=step,
        geometry=Geometry(
            kind="square", grid_to_px=affine, residual_pitch=0.0, technology=technology, pitch_um=float(bin_um)
        ),
        library_id=library_id,
        n_spots_total=len(rows),
    )
    slide.metadata["bin_um"] = float(bin_um)
    return slide


# ---------------------------------------------------------------------- cells
def _bin_cells(matrix: Path, cells_file: Path, bin_um: float):
    from .io import read_10x_h5
    from .mex import read_10x_mex

    if matrix.is_dir():
        counts, names, _, barcodes = read_10x_mex(matrix)
    else:
        counts, names, _, barcodes, _ = read_10x_h5(matrix)
    gene = ~is_control(names)
    counts, names = counts[:, gene], np.asarray(names)[gene]
    table = _read_table(cells_file, ["cell_id", "x_centroid", "y_centroid"])
    ids = pd.Index(_as_str(table["cell_id"].to_numpy()))
    where = ids.get_indexer(np.asarray(barcodes).astype(str))
    if (where < 0).any():
        raise SlideError(
            matrix, f"{int((where < 0).sum())} of {len(where)} cells of the matrix are not in {cells_file.name}"
        )
    x = table["x_centroid"].to_numpy(np.float64)[where]
    y = table["y_centroid"].to_numpy(np.float64)[where]
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.all():
        warnings.warn(f"{cells_file}: {int((~ok).sum())} cell(s) without a centroid left out", stacklevel=3)
        counts, x, y = counts[ok], x[ok], y[ok]
    try:
        rows, cols, binned = bin_cells(x, y, counts, bin_um)
    except ValueError as exc:
        raise SlideError(cells_file, str(exc)) from None
    return rows, cols, binned, names, counts.shape[0]


# ---------------------------------------------------------------------- transcripts
def _bin_transcripts(f: Path, bin_um: float):
    binner = TranscriptBinner(bin_um)
    try:
        if f.suffix == ".parquet":
            _stream_parquet(f, binner)
        else:
            _stream_csv(f, binner)
    except ValueError as exc:
        raise SlideError(f, _short(exc)) from None
    rows, cols, counts, genes = binner.result()
    return rows, cols, counts, genes, binner.n_molecules


def _stream_parquet(f: Path, binner: TranscriptBinner) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(f)
        names = set(pf.schema_arrow.names)
        _require_columns(f, names, ("feature_name", "x_location", "y_location"))
        cols = ["feature_name", "x_location", "y_location"] + [c for c in ("qv", "is_gene") if c in names]
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=cols):
            feat = batch.column("feature_name")
            if not pa.types.is_dictionary(feat.type):
                feat = pc.dictionary_encode(feat)
            codes = binner.gene_codes(feat.dictionary.to_pylist())
            idx = pc.fill_null(feat.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
            gene = _lookup(codes, idx)
            keep = np.ones(len(idx), bool)
            if "qv" in cols:
                qv = pc.fill_null(pc.cast(batch.column("qv"), pa.float64()), 0.0)
                keep &= qv.to_numpy(zero_copy_only=False) >= MIN_QV
            if "is_gene" in cols:
                keep &= pc.fill_null(pc.cast(batch.column("is_gene"), pa.bool_()), False).to_numpy(zero_copy_only=False)
            gene = np.where(keep, gene, -1)
            binner.add(
                batch.column("x_location").to_numpy(zero_copy_only=False),
                batch.column("y_location").to_numpy(zero_copy_only=False),
                gene,
            )
    except (OSError, pa.ArrowException) as exc:
        raise SlideError(f, f"unreadable parquet file ({_short(exc)})") from None


def _stream_csv(f: Path, binner: TranscriptBinner) -> None:
    try:
        header = pd.read_csv(f, nrows=0).columns
    except (OSError, UnicodeDecodeError, EOFError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SlideError(f, f"unreadable table ({_short(exc)})") from None
    _require_columns(f, set(header), ("feature_name", "x_location", "y_location"))
    cols = ["feature_name", "x_location", "y_location"] + [c for c in ("qv", "is_gene") if c in header]
    try:
        for chunk in pd.read_csv(f, usecols=cols, chunksize=BATCH_ROWS, dtype={"feature_name": "category"}):
            cat = chunk["feature_name"].cat
            codes = binner.gene_codes(list(cat.categories))
            gene = _lookup(codes, cat.codes.to_numpy().astype(np.int64))
            keep = np.ones(len(chunk), bool)
            if "qv" in cols:
                keep &= pd.to_numeric(chunk["qv"], errors="coerce").fillna(0).to_numpy() >= MIN_QV
            if "is_gene" in cols:
                keep &= chunk["is_gene"].astype(str).str.lower().isin(["true", "1"]).to_numpy()
            binner.add(
                pd.to_numeric(chunk["x_location"], errors="coerce").to_numpy(np.float64),
                pd.to_numeric(chunk["y_location"], errors="coerce").to_numpy(np.float64),
                np.where(keep, gene, -1),
            )
    except (OSError, UnicodeDecodeError, EOFError, pd.errors.ParserError) as exc:
        raise SlideError(f, f"unreadable table ({_short(exc)})") from None


# ---------------------------------------------------------------------- tables and images
def _read_table(f: Path, columns: list[str]) -> pd.DataFrame:
    """Columns of a parquet or CSV table (a leading unnamed row-name column is ignored)."""
    try:
        if f.suffix == ".parquet":
            import pyarrow.parquet as pq

            names = set(pq.ParquetFile(f).schema_arrow.names)
            _require_columns(f, names, columns)
            return pd.read_parquet(f, columns=columns)
        header = pd.read_csv(f, nrows=0).columns
        _require_columns(f, set(header), columns)
        return pd.read_csv(f, usecols=columns)
    except SlideError:
        raise
    except Exception as exc:  # pyarrow, gzip and pandas raise many types on corrupt files
        kind = "parquet file" if f.suffix == ".parquet" else "table"
        raise SlideError(f, f"unreadable {kind} ({_short(exc)})") from None


def _require_columns(f: Path, have: set, need) -> None:
    missing = [c for c in need if c not in have]
    if missing:
        raise SlideError(f, f"no column {', '.join(missing)} (columns: {', '.join(sorted(map(str, have))[:12])})")


def _read_morphology(root: Path) -> tuple[dict, dict]:
    from .pyramid import read_ome_tiff_level

    for name in IMAGES:
        f = root / name
        if f.is_dir():  # XOA >= 2: one OME-TIFF per stain, DAPI first
            tiffs = sorted(f.glob("*.ome.tif"))
            f = next((t for t in tiffs if "dapi" in t.name.lower()), tiffs[0] if tiffs else None)
        if f is None or not f.is_file():
            continue
        got = read_ome_tiff_level(f)
        if got is not None:
            img, factor = got
            return {"morphology": img}, {"morphology": float(factor)}  # DAPI (see image_label)
    return {}, {}


def _lookup(codes: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``codes[idx]``, and ``-1`` where ``idx`` is ``-1`` (a missing name)."""
    if len(codes) == 0:
        return np.full(len(idx), -1, np.int64)
    return np.where(idx >= 0, codes[np.maximum(idx, 0)], -1)


def _as_str(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind in ("i", "u"):
        return a.astype(str)
    return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in a], dtype=object)


def _short(exc: Exception) -> str:
    msg = str(exc).strip()
    return (msg.splitlines()[0] if msg else type(exc).__name__)[:160]
