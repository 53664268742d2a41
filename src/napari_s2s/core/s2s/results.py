"""Writing imputed results: atomic ``.h5ad`` writes that never overwrite the input slide."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import SlideError


def check_output_path(out_path: str | Path, source: str | Path | None = None) -> Path:
    """Validate an output path before any work is done.

    Raises
    ------
    SlideError
        When the output is the input slide (or inside an input folder), is a folder, or its folder
        does not exist.
    """
    out = Path(out_path).expanduser()
    if out.is_dir():
        raise SlideError(out, "output path is a folder; give a file name such as result.h5ad")
    if not out.parent.exists():
        raise SlideError(out, f"output folder {out.parent} does not exist")
    if source:
        src = Path(source).expanduser().resolve()
        dst = out.resolve()
        if dst == src or (src.is_dir() and src in dst.parents):
            raise SlideError(out, "refusing to overwrite the input slide; choose another output path")
    return out


def write_imputed(adata, out_path: str | Path, source: str | Path | None = None) -> Path:
    """Write an imputed AnnData to ``out_path`` atomically (temporary file, then rename).

    Parameters
    ----------
    adata
        The AnnData to write.
    out_path
        Destination ``.h5ad``.
    source
        The input slide's path; the write is refused when ``out_path`` is (or is inside) it.
        Defaults to ``adata.uns['s2s']['source']`` when present.
    """
    if source is None:
        source = (adata.uns.get("s2s", {}) or {}).get("source") or None
    out = check_output_path(out_path, source)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=str(out.parent))
    os.close(fd)
    try:
        adata.write_h5ad(tmp)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return out
