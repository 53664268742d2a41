"""10x Market Exchange (MEX) matrix folders: ``matrix.mtx``, ``features.tsv``, ``barcodes.tsv``.

Space Ranger and Xenium write them gzipped (``*.gz``); files are opened by their content, not their
name, because real folders exist whose ``.gz`` files are plain text (the shared Visium HD layout).
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from ..errors import SlideError

_GZIP_MAGIC = b"\x1f\x8b"


def find_mex_file(folder: Path, stem: str) -> Path | None:
    """``stem`` or ``stem.gz`` in ``folder`` (``features`` falls back to Cell Ranger 2's ``genes``)."""
    names = [stem, stem + ".gz"]
    if stem == "features.tsv":
        names += ["genes.tsv", "genes.tsv.gz"]
    return next((folder / n for n in names if (folder / n).is_file()), None)


def is_mex_folder(folder: Path) -> bool:
    return folder.is_dir() and all(find_mex_file(folder, s) for s in ("matrix.mtx", "features.tsv", "barcodes.tsv"))


def _open_text(path: Path):
    with open(path, "rb") as fh:
        gz = fh.read(2) == _GZIP_MAGIC
    return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8") if gz else open(path, encoding="utf-8")


def read_10x_mex(folder: Path) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray]:
    """Read a MEX folder: ``(counts (barcodes x genes) float32 CSR, gene names, gene ids, barcodes)``.

    Only "Gene Expression" features are kept when the features table has a type column.
    """
    files = {s: find_mex_file(folder, s) for s in ("matrix.mtx", "features.tsv", "barcodes.tsv")}
    missing = [s for s, f in files.items() if f is None]
    if missing:
        raise SlideError(folder / (missing[0] + ".gz"), "missing from the matrix folder")
    try:
        with _open_text(files["features.tsv"]) as fh:
            feats = pd.read_csv(fh, sep="\t", header=None, dtype=str, quoting=3)
        with _open_text(files["barcodes.tsv"]) as fh:
            barcodes = pd.read_csv(fh, sep="\t", header=None, dtype=str, quoting=3).iloc[:, 0]
    except (OSError, UnicodeDecodeError, EOFError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SlideError(folder, f"unreadable features or barcodes table ({_short(exc)})") from None
    feats = feats.apply(lambda c: c.str.strip('"'))
    barcodes = barcodes.str.strip('"').to_numpy(dtype=object)
    try:
        with _open_text(files["matrix.mtx"]) as fh:
            mat = scipy.io.mmread(fh)
    except (OSError, UnicodeDecodeError, EOFError, ValueError, IndexError) as exc:
        raise SlideError(files["matrix.mtx"], f"unreadable Matrix Market file ({_short(exc)})") from None
    mat = sp.csr_matrix(sp.csc_matrix(mat).T, dtype=np.float32)  # genes x barcodes -> barcodes x genes
    if mat.shape != (len(barcodes), len(feats)):
        raise SlideError(
            files["matrix.mtx"],
            f"matrix is {mat.shape[1]} x {mat.shape[0]} but there are {len(feats)} features and "
            f"{len(barcodes)} barcodes",
        )
    ids = feats.iloc[:, 0].to_numpy(dtype=object)
    names = feats.iloc[:, 1].to_numpy(dtype=object) if feats.shape[1] > 1 else ids
    if feats.shape[1] > 2:
        keep = (feats.iloc[:, 2] == "Gene Expression").to_numpy()
        if keep.any() and not keep.all():
            mat, names, ids = mat[:, keep], names[keep], ids[keep]
    return mat, names.astype(str), ids.astype(str), barcodes.astype(str)


def _short(exc: Exception) -> str:
    msg = str(exc).strip()
    return (msg.splitlines()[0] if msg else type(exc).__name__)[:160]
