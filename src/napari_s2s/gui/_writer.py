"""npe2 writer: an imputed gene-stack layer -> the ``.h5ad`` of the CLI contract, with provenance."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import SlideError
from .layers import s2s_meta


class NotImputed(ValueError):
    """The layer holds no imputed result (only layers made by the S2S widget can be saved)."""


def save_imputed(entry: dict, path: str | Path) -> str:
    """Write the imputed result held in a layer's ``metadata["napari_s2s"]`` entry to ``path``.

    The entry must carry ``result`` (the engine's ``ImputedResult``), ``slide``, ``config`` and
    ``seconds``, and may carry ``provenance`` (``S2SImputer.provenance``); the AnnData is the one
    ``napari-s2s impute`` writes (``uns['s2s']`` provenance).
    """
    if entry and entry.get("kind") == "imputed" and entry.get("preview"):
        raise NotImputed("these are preview maps of a training still running: save the final maps")
    if not entry or entry.get("kind") != "imputed" or entry.get("result") is None:
        raise NotImputed("only imputed layers made by the S2S widget can be saved as S2S .h5ad")
    path = Path(path)
    if path.suffix.lower() != ".h5ad":
        path = path.with_suffix(".h5ad")
    slide = entry["slide"]
    if slide.source and Path(slide.source).resolve() == path.resolve():
        raise NotImputed(f"{path}: refusing to overwrite the input slide")
    adata = entry["result"].to_anndata(
        slide, entry.get("config"), float(entry.get("seconds") or 0.0), device=entry.get("device")
    )
    adata.uns["s2s"].update(entry.get("provenance") or {})  # base, networks' weight, verdict: as the CLI
    # how the slide was read (e.g. a Xenium bin size asked by the Open menu): a review session of this
    # result reads the slide the same way
    adata.uns["s2s"].setdefault("reading", {"counts_from": "auto", **slide.reading()})
    _write_adata(adata, path)
    return str(path)


def _write_adata(adata, path: Path) -> None:
    """``core.s2s.results.write_imputed`` (atomic) when present, else an atomic write here."""
    try:
        from ..core.s2s.results import write_imputed as write_adata
    except ImportError:
        write_adata = None
    if write_adata is not None:
        write_adata(adata, path)
        return
    from ..core.checks import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    # a temporary file beside it, then a rename; the file gets the mode a normal write gives (umask)
    atomic_write(path, lambda tmp: adata.write_h5ad(tmp), as_slide_error=False)


def write_imputed(path: str, data, meta: dict) -> list[str]:
    """npe2 single-layer writer: returns ``[path]`` written, or ``[]`` (with a notification)."""
    try:
        return [save_imputed(s2s_meta(meta), path)]
    except (NotImputed, SlideError, OSError) as exc:  # SlideError: an output folder missing or not writable
        from napari.utils.notifications import show_error

        show_error(f"napari-s2s: {exc}")
        return []
