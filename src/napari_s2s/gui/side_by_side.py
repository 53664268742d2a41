"""Side-by-side review in napari's grid mode: measured | imputed, each over its own copy of the H&E,
each panel labelled with its layer's name ("... measured ...", "... imputed by S2S-ST", bottom left)
and the gene's name (top right, where napari's notifications do not come up).

Plain functions over a viewer (no widget state): :func:`enter` arranges the layers and returns what
:func:`leave` needs to put the viewer back as it was. Layers made for side by side only (the H&E
copy, a saved result's measured view: ``side_by_side_only`` in their metadata) go when it ends.
"""

from __future__ import annotations

from .layers import META_KEY, s2s_meta


def enter(viewer, measured, imputed, he=None) -> dict:
    """Show ``measured`` and ``imputed`` in two grid cells, the H&E layer ``he`` (if any) under each.

    Returns the visibility of every other layer (hidden meanwhile), for :func:`leave`.
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
        label.font_size = 9
        label.box = True
        label.visible = True
    viewer.canvas.overlays.text.gridded = True  # the gene's name top right of each panel
    grid = viewer.canvas.grid
    grid.stride = 2 if he is not None else 1
    grid.shape = (1, 2)
    grid.enabled = True
    viewer.layers.selection.active = imputed
    viewer.reset_view()
    return saved


def leave(viewer, saved: dict | None) -> None:
    """Back to one view: the H&E copies go, the other layers get their visibility back."""
    viewer.canvas.grid.enabled = False
    viewer.canvas.overlays.text.gridded = False
    for layer in list(viewer.layers):
        m = s2s_meta(layer)
        if m and (m.get("kind") == "he_copy" or m.get("side_by_side_only")):
            viewer.layers.remove(layer)
        elif m:
            layer.name_overlay.visible = False
    for layer, visible in (saved or {}).items():
        if layer in viewer.layers:
            layer.visible = visible
    if saved is not None:
        viewer.reset_view()
