"""Side-by-side review in napari's grid mode: measured | imputed, each over its own copy of the H&E,
each panel labelled with its layer's name ("... measured ...", "... imputed by S2S-ST", bottom left)
and the gene's name (top right, where napari's notifications do not come up).

Plain functions over a viewer (no widget state): :func:`enter` arranges the layers and returns what
:func:`leave` needs to put the viewer back as it was. Layers made for side by side only (the H&E
copy, a saved result's measured view: ``side_by_side_only`` in their metadata) go when it ends.
"""

from __future__ import annotations

import numpy as np

from .gene_display import place_gene_name
from .layers import META_KEY, s2s_meta


def enter(viewer, measured, imputed, he=None) -> dict:
    """Show ``measured`` and ``imputed`` in two grid cells, the H&E layer ``he`` (if any) under each.

    Returns the visibility of every other layer (hidden meanwhile), for :func:`leave` (which also
    disconnects what keeps the panel labels sized to their panels).
    """
    order = [measured, imputed]
    if he is not None:
        copy = viewer.add_image(
            he.data,
            name=f"{he.name} (copy)",
            rgb=True,
            scale=he.scale,
            translate=he.translate,
            units=he.units,
            metadata={META_KEY: dict(s2s_meta(he), kind="he_copy")},
        )
        order = [he, measured, copy, imputed]
    saved = {layer: layer.visible for layer in viewer.layers if layer not in order}
    for k, layer in enumerate(order):
        viewer.layers.move(viewer.layers.index(layer), k)
    for layer in saved:
        layer.visible = False
    for layer in order:
        layer.visible = True
    for layer in (measured, imputed):  # the panel labels, bottom left of each panel
        label = layer.name_overlay
        label.position = "bottom_left"
        label.box = True
        label.visible = True
    viewer.canvas.overlays.text.gridded = True  # the gene's name top right of each panel
    grid = viewer.canvas.grid
    grid.stride = 2 if he is not None else 1
    grid.shape = (1, 2)
    grid.enabled = True

    def fit(event=None) -> None:
        fit_labels(viewer, (measured, imputed))

    fit()
    viewer.canvas.events.size.connect(fit)  # the window resized: the labels still fit their panels
    for layer in (measured, imputed):
        layer.events.name.connect(fit)  # a preview's name becomes the final maps' name
    viewer.canvas.overlays.text.events.text.connect(fit)  # another gene: its name fits its panel too
    saved[_FIT] = (fit, (measured, imputed))
    viewer.layers.selection.active = imputed
    viewer.reset_view()
    return saved


#: Key of the label-fitting callback in what :func:`enter` returns.
_FIT = "fit labels"
#: Largest and smallest font size of the panel labels (points).
LABEL_PT = (9.0, 6.0)
#: Width of one character of a label per point of font size (pixels; measured on napari's canvas
#: text at 96 dpi, where a 9 pt label takes 8.8-8.9 px per character), with a margin.
PX_PER_CHAR_PT = 1.0
#: Largest and smallest font size of the gene's name top right of each panel (points).
GENE_PT = (14.0, 6.0)
#: Width kept clear of the gene's name at the top of a panel for the scale bar, top left (pixels).
SCALE_BAR_PX = 130.0


def label_font_size(text: str, panel_px: float) -> float:
    """The largest font size (half points, at most ``LABEL_PT[0]``, at least ``LABEL_PT[1]``) at which
    ``text`` fits in 95 % of a panel ``panel_px`` wide: a long slide name ("measured: visium_mouse_brain
    (8 genes)") side by side on a laptop screen shrinks its label rather than running into the next
    panel's."""
    fits = 0.95 * float(panel_px) / (max(len(text), 1) * PX_PER_CHAR_PT)
    return float(min(LABEL_PT[0], max(LABEL_PT[1], np.floor(fits * 2.0) / 2.0)))


def fit_labels(viewer, layers) -> None:
    """Size the panel labels of ``layers`` to their grid cell's width (all the same size)."""
    layers = [layer for layer in layers if layer in viewer.layers]
    if not layers:
        return
    try:
        panel_px = float(viewer.canvas.viewbox_size(viewer.layers)[1])
    except Exception:  # a napari without the grid's cell size: the canvas halved
        panel_px = float(viewer.canvas.size[1]) / 2.0
    size = min(label_font_size(layer.name, panel_px) for layer in layers)
    for layer in layers:
        layer.name_overlay.font_size = size
    gene = viewer.canvas.overlays.text
    gene.font_size = gene_font_size(gene.text, panel_px)


def gene_font_size(name: str, panel_px: float) -> float:
    """The gene name's font size (half points, from ``GENE_PT[0]`` down to ``GENE_PT[1]``) at which it
    fits beside the scale bar at the top of a panel ``panel_px`` wide (long Ensembl ids on a laptop
    screen shrink instead of running over the bar)."""
    room = 0.95 * float(panel_px) - SCALE_BAR_PX
    fits = room / (max(len(name), 1) * PX_PER_CHAR_PT)
    return float(min(GENE_PT[0], max(GENE_PT[1], np.floor(fits * 2.0) / 2.0)))


def leave(viewer, saved: dict | None) -> None:
    """Back to one view: the H&E copies go, the other layers get their visibility back."""
    reset = saved is not None
    saved = dict(saved or {})
    fit, labelled = saved.pop(_FIT, (None, ()))
    if fit is not None:
        viewer.canvas.events.size.disconnect(fit)
        viewer.canvas.overlays.text.events.text.disconnect(fit)
        for layer in labelled:
            layer.events.name.disconnect(fit)
        place_gene_name(viewer)  # the gene's name back to its size on one canvas
    viewer.canvas.grid.enabled = False
    viewer.canvas.overlays.text.gridded = False
    for layer in list(viewer.layers):
        m = s2s_meta(layer)
        if m and (m.get("kind") == "he_copy" or m.get("side_by_side_only")):
            viewer.layers.remove(layer)
        elif m:
            layer.name_overlay.visible = False
    for layer, visible in saved.items():
        if layer in viewer.layers:
            layer.visible = visible
    if reset:
        viewer.reset_view()
