"""Layer data for napari, built from core objects (no Qt; napari only for its data conventions).

World coordinates are ``(y, x)`` in the slide's units (micrometres when the pitch is known). The
H&E is an RGB image scaled by :meth:`Slide.image_scale`; gene grids are ``(gene, y, x)`` stacks whose
last two axes carry the grid's affine (:meth:`GeneGrid.display`), so each spot's value lands on the
spot in the H&E. Hex lattices are drawn as bricks at their true positions.

Every layer made here carries ``metadata["napari_s2s"]`` (see :func:`s2s_meta`) with what the dock
widget needs: the kind of layer, the source path, library id, genes, units and the :class:`Slide`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.data.slide import GeneGrid, Slide, grid_from_spots

#: Key of the plugin's entry in ``layer.metadata``.
META_KEY = "napari_s2s"

#: Default colormaps per layer kind (error maps: PiYG, pink below zero, green above).
COLORMAPS = {"measured": "viridis", "imputed": "viridis", "error": "PiYG"}


def stack_name(what: str, slide_name: str) -> str:
    """Layer names say what a stack is first, then the slide: ``"measured: her2st_C2 (8 genes)"``.
    Side by side they are the panels' labels, and a label cut at a narrow panel's edge keeps its start."""
    return f"{what}: {slide_name}"


def measured_name(slide_name: str, n_genes: int | None = None) -> str:
    return stack_name("measured", slide_name) + ("" if n_genes is None else f" ({n_genes} genes)")


def imputed_name(slide_name: str, what: str = "") -> str:
    """Name of an imputed stack: it says by what (the side-by-side label), ``what`` in brackets."""
    return stack_name("imputed by S2S-ST" + (f" ({what})" if what else ""), slide_name)


def error_name(slide_name: str, method: str) -> str:
    """Name of a hold-out error stack: which colour means what (PiYG of prediction minus truth)."""
    return stack_name(f"hold-out error of {method} (green over-, pink under-predicted)", slide_name)


LayerData = tuple[Any, dict, str]


def napari_units(units: str) -> str:
    """A unit napari (pint) understands: ``"um"`` stays, anything else (pixel, pitch) is ``"pixel"``."""
    return "um" if units == "um" else "pixel"


def s2s_meta(layer_or_meta) -> dict | None:
    """The plugin's metadata of a layer (or of a layer-data ``kwargs``/``metadata`` dict), or ``None``."""
    meta = getattr(layer_or_meta, "metadata", layer_or_meta)
    if not isinstance(meta, dict):
        return None
    if "metadata" in meta and isinstance(meta["metadata"], dict):
        meta = meta["metadata"]
    entry = meta.get(META_KEY)
    return entry if isinstance(entry, dict) else None


def base_meta(slide: Slide, kind: str, **extra) -> dict:
    """The ``metadata["napari_s2s"]`` entry common to every layer of ``slide``."""
    entry = {
        "kind": kind,
        "source": slide.source,
        "library_id": slide.library_id,
        "slide_name": slide.name,
        "units": slide.geometry.units,
        "slide": slide,
    }
    entry.update(extra)
    return {META_KEY: entry}


def embed_affine(affine_2d: np.ndarray, ndim: int) -> np.ndarray:
    """Embed a 3x3 ``(y, x)`` affine in an ``(ndim+1)``-square affine, identity on leading axes."""
    out = np.eye(ndim + 1)
    k = ndim - 2
    out[k:ndim, k:ndim] = affine_2d[:2, :2]
    out[k:ndim, ndim] = affine_2d[:2, 2]
    return out


def gene_limits(values: np.ndarray) -> list[tuple[float, float]]:
    """Contrast limits per gene: ``(0, high)`` with ``high`` the 99th percentile of positive values.

    Percentiles over all positions would map a lowly expressed gene (mostly zeros) to black; taking
    them over the positive values keeps such genes visible. A gene with no positive value gets
    ``(0, 1)``.
    """
    out = []
    for v in values:
        pos = v[np.isfinite(v) & (v > 0)]
        high = float(np.percentile(pos, 99)) if pos.size else 1.0
        out.append((0.0, high if high > 0 else 1.0))
    return out


def he_layer(slide: Slide, name: str | None = None) -> LayerData | None:
    """The H&E image as an RGB layer in world units, or ``None`` when the slide has no image."""
    name = name or slide.best_image()
    if name is None:
        return None
    scale = slide.image_scale(name)
    kwargs = {
        "name": f"{slide.name} {slide.metadata.get('image_label', 'H&E')}",
        "rgb": True,
        "scale": (scale, scale),
        "units": (napari_units(slide.geometry.units),) * 2,
        "metadata": base_meta(slide, "he", image=name),
    }
    return slide.images[name], kwargs, "image"


def gene_stack_layer(
    slide: Slide,
    grid: GeneGrid,
    kind: str = "measured",
    name: str | None = None,
    limits: list[tuple[float, float]] | None = None,
    **extra_meta,
) -> LayerData:
    """A ``(gene, y, x)`` image layer of ``grid`` placed by the grid's affine (a gene slider).

    Parameters
    ----------
    slide
        The slide the grid belongs to (for metadata and units).
    grid
        Values to show (measured, imputed or errors) and their geometry.
    kind
        ``"measured"``, ``"imputed"`` or ``"error"``; stored in the metadata and picks the colormap.
    name
        Layer name (default ``"<slide> <kind>"``).
    limits
        Contrast limits per gene (default :func:`gene_limits` of the values); the layer starts with
        the first gene's and the widget switches them with the gene slider.
    extra_meta
        More entries for ``metadata["napari_s2s"]`` (the imputed result, config, ...).
    """
    data, affine = grid.display()
    limits = limits if limits is not None else gene_limits(data)
    if kind == "error":
        limits = [(-abs(b) or -1.0, abs(b) or 1.0) for _, b in limits]
    units = napari_units(grid.units)
    meta = base_meta(slide, kind, genes=list(grid.genes), grid=grid, gene_limits=limits, **extra_meta)
    kwargs = {
        "name": name or stack_name(kind, slide.name),
        "affine": embed_affine(affine, 3),
        "units": ("pixel", units, units),
        "axis_labels": ("gene", "y", "x"),
        "colormap": COLORMAPS.get(kind, "viridis"),
        "contrast_limits": limits[0] if limits else (0.0, 1.0),
        "interpolation2d": "nearest",
        "blending": "translucent",
        "opacity": 0.85,
        "metadata": meta,
    }
    return data, kwargs, "image"


def slide_layers(slide: Slide, genes: list[str] | None = None, n_genes: int = 4) -> list[LayerData]:
    """Layers for a newly opened slide: the H&E (when present) and the measured gene stack.

    ``genes`` defaults to the ``n_genes`` most variable genes of the slide. A reopened napari-s2s
    result (:attr:`Slide.is_imputed_result`) shows all its imputed genes, named as such, and a
    (hidden) points layer marking the positions that were measured spots.
    """
    if slide.is_imputed_result:
        genes = list(genes) if genes else slide.result_genes()
    else:
        genes = list(genes) if genes else slide.top_variable_genes(n_genes)
    if not genes:  # nothing passes the detection filter: fall back to the first genes
        genes = [str(g) for g in slide.genes[:n_genes]]
    out = []
    he = he_layer(slide)
    if he is not None:
        out.append(he)
    if slide.is_imputed_result:
        out.append(
            gene_stack_layer(slide, slide.grid(genes), "measured", name=imputed_name(slide.name), saved_result=True)
        )
        spots = measured_spots_layer(slide)
        if spots is not None:
            out.append(spots)
    else:  # the dock widget keeps this stack on the genes it selects (until a run uses it)
        out.append(gene_stack_layer(slide, slide.grid(genes), "measured", follows_selection=True))
    return out


def saved_measured_layer(slide: Slide, genes: list[str], limits=None) -> LayerData | None:
    """A reopened result's values at its measured spots, drawn on the measured lattice (the x2 dense
    grid's measured spot ``(2 row, 2 col)`` is lattice spot ``(row, col)``), as the slide's measured
    stack looked: what was measured, to set beside the imputed maps. ``None`` when the result does not
    say which spots were measured."""
    measured = slide.result_measured()
    if measured is None or not measured.any():
        return None
    use = slide.usable()
    keep = measured & use
    dense_r, dense_c = slide.array_row[keep], slide.array_col[keep]
    if np.any(dense_r % 2) or np.any(dense_c % 2):
        return None  # not the x2 dense grid of napari-s2s
    vals = slide.lognorm(list(genes))[keep[use]]
    grid = grid_from_spots(dense_r // 2, dense_c // 2, vals, genes, slide.kind, slide.geometry, scale=2.0)
    return gene_stack_layer(
        slide, grid, "measured", name=measured_name(slide.name), limits=limits, side_by_side_only=True
    )


def measured_spots_layer(slide: Slide) -> LayerData | None:
    """Hollow markers at the measured spots (hidden at first), sized for the x2 dense grid, or ``None``.

    For a reopened result, the positions it marks as measured; for a slide, its usable spots (where
    its imputed maps hold the measured values).
    """
    measured = slide.result_measured() if slide.is_imputed_result else slide.usable()
    if measured is None or not measured.any():
        return None
    pitch = slide.geometry.pitch_um if slide.geometry.units == "um" and slide.geometry.pitch_um else 1.0
    dense_pitch = pitch if slide.is_imputed_result else pitch / 2.0
    kwargs = {
        "name": stack_name("measured spots", slide.name),
        "size": 0.9 * dense_pitch,  # a ring inside each measured position of the dense grid
        "face_color": "transparent",
        "border_color": "white",
        "border_width": 0.12,
        "border_width_is_relative": True,
        "units": (napari_units(slide.geometry.units),) * 2,
        "visible": False,
        "metadata": base_meta(slide, "spots"),
    }
    return slide.spot_world()[measured], kwargs, "points"


def world_of_index(affine: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Apply a square homogeneous affine to (n, d) indices; returns (n, d) world points."""
    index = np.atleast_2d(np.asarray(index, dtype=np.float64))
    pts = np.concatenate([index, np.ones((index.shape[0], 1))], axis=1)
    return (pts @ np.asarray(affine).T)[:, :-1]
