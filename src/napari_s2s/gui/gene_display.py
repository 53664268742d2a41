"""One gene at a time on every gene stack: its contrast limits, its name on the canvas, and jumping to it.

Gene stacks (measured, imputed, error maps) share the gene slider (axis 0); each carries per-gene
contrast limits and its gene names in ``metadata["napari_s2s"]`` (:mod:`.layers`).
"""

from __future__ import annotations

from .layers import s2s_meta

#: Layer kinds that hold gene stacks (the gene slider switches their contrast limits).
GENE_KINDS = ("measured", "imputed", "error")


def sync_gene_display(viewer) -> None:
    """Contrast limits of the current gene on every gene stack, and its name on the canvas."""
    if viewer.dims.ndim < 3:
        return
    g = int(viewer.dims.current_step[0])
    name = None
    for layer in viewer.layers:
        m = s2s_meta(layer)
        if not m or m.get("kind") not in GENE_KINDS:
            continue
        limits = m.get("gene_limits") or []
        if 0 <= g < len(limits) and tuple(layer.contrast_limits) != tuple(limits[g]):
            layer.contrast_limits = limits[g]
        genes = m.get("genes") or []
        if layer.visible and 0 <= g < len(genes) and (name is None or layer in viewer.layers.selection):
            name = genes[g]
    overlay = viewer.canvas.overlays.text
    overlay.visible = name is not None
    overlay.text = name or ""


def show_gene(viewer, gene: str) -> None:
    """Move the gene slider to ``gene`` (as the active layer lists its genes)."""
    if viewer.dims.ndim < 3:
        return
    layer = viewer.layers.selection.active
    m = s2s_meta(layer) if layer is not None else None
    genes = (m or {}).get("genes") or []
    if gene in genes:
        viewer.dims.set_current_step(0, genes.index(gene))
