"""One gene at a time on every gene stack: its contrast limits, its name on the canvas, and jumping to it.

Gene stacks (measured, imputed, error maps) share the gene slider (axis 0); each carries per-gene
contrast limits and its gene names in ``metadata["napari_s2s"]`` (:mod:`.layers`).
"""

from __future__ import annotations

from .layers import s2s_meta

#: Layer kinds that hold gene stacks (the gene slider switches their contrast limits).
GENE_KINDS = ("measured", "imputed", "error")


def gene_stacks(viewer, gene: str | None = None) -> list:
    """The gene stacks in the viewer (holding ``gene``, when given), the ones on screen first, the
    active layer first among them, then from the top of the layer list down."""
    active = viewer.layers.selection.active
    stacks = []
    for layer in viewer.layers:
        m = s2s_meta(layer)
        if m and m.get("kind") in GENE_KINDS and (gene is None or gene in (m.get("genes") or [])):
            stacks.append(layer)
    stacks.reverse()  # the top of the layer list first
    # compared by id: in a plugin dock the viewer is napari's proxy, which wraps layers anew each time
    active_id = None if active is None else active.unique_id
    return sorted(stacks, key=lambda x: (not x.visible, x.unique_id != active_id))


def sync_gene_display(viewer) -> None:
    """Contrast limits of the current gene on every gene stack, and its name on the canvas."""
    if viewer.dims.ndim < 3:
        return
    g = int(viewer.dims.current_step[0])
    for layer in gene_stacks(viewer):
        limits = s2s_meta(layer).get("gene_limits") or []
        if 0 <= g < len(limits) and tuple(layer.contrast_limits) != tuple(limits[g]):
            layer.contrast_limits = limits[g]
    name = shown_gene(viewer)
    overlay = viewer.canvas.overlays.text
    overlay.visible = name is not None
    overlay.text = name or ""


def place_gene_name(viewer) -> None:
    """The gene name goes top right on the canvas, large: napari's notifications come up bottom right."""
    overlay = viewer.canvas.overlays.text
    overlay.position = "top_right"
    overlay.font_size = 14


def scale_bar(viewer):
    """The viewer's scale bar overlay (napari reads its unit from the layers' units)."""
    return viewer.canvas.overlays.scale_bar


def show_scale_bar(viewer) -> None:
    """Turn the scale bar on, top left: clear of the gene name (top right) and of the side-by-side
    panels' labels (bottom); one per panel of napari's grid where napari can (``gridded``)."""
    bar = scale_bar(viewer)
    bar.position = "top_left"
    if hasattr(bar, "gridded"):
        bar.gridded = True
    bar.visible = True


def shown_gene(viewer) -> str | None:
    """The gene the canvas shows: the current gene slider position on the gene stack on screen (the
    active one if it is a visible gene stack), ``None`` when no gene stack is visible."""
    if viewer.dims.ndim < 3:
        return None
    g = int(viewer.dims.current_step[0])
    for layer in gene_stacks(viewer):
        genes = s2s_meta(layer).get("genes") or []
        if layer.visible and 0 <= g < len(genes):
            return genes[g]
    return None


def show_gene(viewer, gene: str) -> bool:
    """Move the gene slider to ``gene``, whatever layer is active (H&E, measured-spot rings...): on the
    gene stack on screen that holds it. Returns whether one does."""
    if viewer.dims.ndim < 3:
        return False
    stacks = gene_stacks(viewer, gene)
    if not stacks:
        return False
    genes = s2s_meta(stacks[0])["genes"]
    viewer.dims.set_current_step(0, genes.index(gene))
    return True
