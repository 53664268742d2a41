"""The layers of runs in the viewer: a slide's measured stack, a training run's imputed stack (empty at
the click, then previews and the final maps written in place), its measured-spots rings, and the error
maps of a validation.

No widgets here: :class:`RunLayers` works on a viewer (napari's proxy of it, in a plugin dock) and the
layer data of :mod:`.layers` / :mod:`.training`.
"""

from __future__ import annotations

from .gene_display import GENE_KINDS
from .layers import gene_stack_layer, measured_name, measured_spots_layer, s2s_meta


class RunLayers:
    """Adds, fills, hides and removes the layers of runs on ``viewer``.

    Parameters
    ----------
    viewer
        The napari viewer (or its public proxy).
    on_change
        Called after layers were (re)arranged (the widget re-syncs the gene display).
    """

    def __init__(self, viewer, on_change=lambda: None):
        self.viewer = viewer
        self._on_change = on_change
        self.run_layer = None  # the imputed layer the running training updates (previews, then final)
        self._replaced: list = []  # (layer, visible) of earlier maps a running training will replace
        self._switched_off: set = set()  # unique ids of layers hidden because another slide was picked

    # ------------------------------------------------------------------ finding layers
    def layers_of(self, slide, kind: str, genes: list[str] | None = None) -> list:
        """The layers of ``slide`` of one ``kind`` (and gene list), in viewer order."""
        out = []
        for layer in self.viewer.layers:
            m = s2s_meta(layer)
            if m and m.get("slide") is slide and m.get("kind") == kind:
                if genes is None or m.get("genes") == list(genes):
                    out.append(layer)
        return out

    def imputed_layer(self, slide):
        """The imputed layer of ``slide``, or ``None``."""
        found = self.layers_of(slide, "imputed") if slide is not None else []
        return found[-1] if found else None

    # ------------------------------------------------------------------ one slide on show
    def show_slide(self, slide) -> list:
        """Show ``slide``'s layers and hide the other slides' (each slide's layers come back as they were
        when it is picked again: a layer the user hid stays hidden). Returns ``slide``'s layers."""
        mine = []
        for layer in self.viewer.layers:
            m = s2s_meta(layer)
            if not m or m.get("slide") is None:
                continue
            uid = layer.unique_id  # by id: napari's proxy wraps every layer it hands out anew
            if m["slide"] is slide:
                mine.append(layer)
                if uid in self._switched_off:
                    self._switched_off.discard(uid)
                    layer.visible = True
            elif layer.visible:
                self._switched_off.add(uid)
                layer.visible = False
        return mine

    # ------------------------------------------------------------------ the measured stack
    def follow_selection(self, slide, genes: list[str]) -> None:
        """The slide's opened measured stack shows the selected genes (until a run pairs it with maps).

        Picking genes shows them at once, and Train finds their measured stack ready (one layer fewer
        to add in the click).
        """
        if slide is None or not genes or slide.is_imputed_result:
            return
        following = [x for x in self.layers_of(slide, "measured") if s2s_meta(x).get("follows_selection")]
        if not following or s2s_meta(following[-1]).get("genes") == genes:
            return
        layer = following[-1]
        data, kwargs, _ = gene_stack_layer(
            slide,
            slide.grid(genes),
            "measured",
            name=measured_name(slide.name, len(genes)),
            follows_selection=True,
        )
        layer.metadata = {**layer.metadata, **kwargs["metadata"]}
        layer.data = data
        layer.name = kwargs["name"]
        self._on_change()

    def _measured_for(self, slide, genes: list[str], layer_data):
        limits = s2s_meta(layer_data[1])["gene_limits"]
        found = self.layers_of(slide, "measured", genes)
        if found:
            layer = found[-1]
            s2s_meta(layer)["gene_limits"] = limits
            s2s_meta(layer)["follows_selection"] = False  # paired with this run's maps from now on
            layer.visible = True
            return layer
        return self.viewer.add_image(layer_data[0], **layer_data[1])

    # ------------------------------------------------------------------ a training run's maps
    def start_run(self) -> None:
        """A new run: its first maps get a layer of their own."""
        self.run_layer = None

    def show_run_maps(self, layers: dict, slide, final_or_preview: bool):
        """Show a run's measured and imputed stacks; later maps of the same run update its layer in place.

        ``layers`` is ``{"measured": ..., "imputed": ...}`` layer data (of :func:`.training.pending_layers`,
        a preview or an outcome); ``final_or_preview`` is false for the empty stack of the click.
        Returns the imputed layer.
        """
        genes = s2s_meta(layers["imputed"][1])["genes"]
        data, kwargs, _ = layers["imputed"]
        layer = self.run_layer
        if layer is not None and layer in self.viewer.layers and layer.data.shape == data.shape:
            if final_or_preview:  # a real map: the maps this run replaces can go now
                self.drop_replaced()
            layer.metadata = {**layer.metadata, **kwargs["metadata"]}
            layer.data = data  # same grid: no new layer, no new visual
            layer.name = kwargs["name"]
            return layer
        for other in self.layers_of(slide, "measured") + self.layers_of(slide, "error"):
            if s2s_meta(other).get("genes") != genes or s2s_meta(other)["kind"] == "error":
                other.visible = False
        measured = self._measured_for(slide, genes, layers["measured"])
        # a new run replaces the last maps and stale previews: hidden now, removed at its first map, shown
        # again if it fails before one
        self.drop_replaced()
        for old in self.layers_of(slide, "imputed"):  # earlier maps and stale previews of this slide
            self._replaced.append((old, old.visible))
            old.visible = False
        imputed = self.viewer.add_image(data, **kwargs)
        if final_or_preview:
            self.drop_replaced()
        link_contrast([measured, imputed])
        self.run_layer = imputed
        self.viewer.layers.selection.active = imputed
        self._on_change()
        return imputed

    def add_spots_layer(self, slide) -> None:
        """Rings at the measured spots (hidden; one per slide), added with the final maps, not while training."""
        if slide is None or self.layers_of(slide, "spots"):
            return
        spots = measured_spots_layer(slide)
        if spots is not None:
            self.viewer.add_points(spots[0], **spots[1])
            self.viewer.layers.selection.active = self.run_layer or self.viewer.layers.selection.active

    def run_failed(self) -> None:
        """A run failed: drop its stack if no map reached it, and show the maps it was replacing again."""
        layer = self.run_layer
        if layer is not None and layer in self.viewer.layers and not s2s_meta(layer).get("step"):
            self.viewer.layers.remove(layer)
        self.restore_replaced()
        self.run_layer = None

    def drop_replaced(self) -> None:
        for old, _ in self._replaced:
            if old in self.viewer.layers:
                self.viewer.layers.remove(old)
        self._replaced = []

    def restore_replaced(self) -> None:
        for old, visible in self._replaced:
            if old in self.viewer.layers:
                old.visible = visible
        self._replaced = []

    # ------------------------------------------------------------------ validation
    def show_error_maps(self, slide, layer_data):
        """Replace the slide's error stack with ``layer_data`` and show it alone over the H&E, with a
        colour bar (its name says which colour is over- and which under-prediction)."""
        data, kwargs, _ = layer_data
        for old in self.layers_of(slide, "error"):
            self.viewer.layers.remove(old)
        layer = self.viewer.add_image(data, **kwargs)
        layer.colorbar.position = "top_left"
        layer.colorbar.visible = True
        for other in self.viewer.layers:
            m = s2s_meta(other)
            # compared by id: in a plugin dock the viewer is napari's proxy, which wraps every layer it
            # hands out anew (``is`` never matches)
            if other.unique_id != layer.unique_id and m and m.get("slide") is slide and m.get("kind") in GENE_KINDS:
                other.visible = False  # the error map alone over the H&E
        self.viewer.layers.selection.active = layer
        self._on_change()
        return layer


def link_contrast(layers) -> None:
    """Link contrast limits (and gamma) of measured and imputed stacks: one slider moves both."""
    from napari.experimental import link_layers

    try:
        link_layers(layers, ("contrast_limits", "gamma"))
    except ValueError:  # already linked
        pass
