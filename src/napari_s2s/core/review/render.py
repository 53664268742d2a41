"""Pictures for the review report, drawn with matplotlib's Agg canvas (no display, no pyplot state).

:func:`gene_panel` draws one gene of a session side by side: the H&E crop, the measured map, and the
two arms' maps, every map with the same contrast and a shared colour bar, all in the slide's world
coordinates (the maps' affines, hex lattices as bricks), cropped to the tissue. :func:`preference_chart`
draws the readers' preferences per gene as stacked bars.
"""

from __future__ import annotations

import io

import numpy as np

from .maps import SessionMaps

#: Colours of the two arms and of "can't tell" in charts.
ARM_COLOURS = ("#1f77b4", "#ff7f0e")
CANT_TELL_COLOUR = "#b0b0b0"
#: Background behind maps (where there is no spot).
BACKGROUND = "#f2f2f2"


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def world_bounds(image: np.ndarray, affine: np.ndarray) -> tuple[float, float, float, float] | None:
    """``(y0, y1, x0, x1)`` world box of an image's finite pixels (half a pixel around their centres)."""
    ii, jj = np.nonzero(np.isfinite(image))
    if ii.size == 0:
        return None
    corners = []
    for di in (-0.5, 0.5):
        for dj in (-0.5, 0.5):
            pts = np.stack([ii + di, jj + dj, np.ones_like(ii, dtype=float)])
            corners.append((np.asarray(affine) @ pts)[:2])
    c = np.concatenate(corners, axis=1)
    return float(c[0].min()), float(c[0].max()), float(c[1].min()), float(c[1].max())


def _union(boxes):
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    a = np.array(boxes)
    return a[:, 0].min(), a[:, 1].max(), a[:, 2].min(), a[:, 3].max()


def draw_map(ax, image: np.ndarray, affine: np.ndarray, limits, cmap: str = "viridis"):
    """Draw a 2-D map placed by its ``(i, j) -> (y, x)`` affine on matplotlib axes in world ``(x, y)``."""
    import matplotlib
    from matplotlib.transforms import Affine2D

    a = np.asarray(affine, dtype=np.float64)
    # matplotlib's image coordinates are (x = j, y = i)
    m = np.array([[a[1, 1], a[1, 0], a[1, 2]], [a[0, 1], a[0, 0], a[0, 2]], [0.0, 0.0, 1.0]])
    cm = matplotlib.colormaps[cmap].with_extremes(bad=(0, 0, 0, 0))
    im = ax.imshow(
        np.ma.masked_invalid(image), cmap=cm, vmin=limits[0], vmax=limits[1], interpolation="nearest", origin="upper"
    )
    im.set_transform(Affine2D(m) + ax.transData)
    return im


def draw_he(ax, he: np.ndarray, scale: float, box) -> None:
    """Draw the part of an H&E image (world units per pixel ``scale``) inside ``box`` = (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = box
    h, w = he.shape[:2]
    r0, r1 = max(0, int(np.floor(y0 / scale)) - 1), min(h, int(np.ceil(y1 / scale)) + 2)
    c0, c1 = max(0, int(np.floor(x0 / scale)) - 1), min(w, int(np.ceil(x1 / scale)) + 2)
    if r1 <= r0 or c1 <= c0:
        return
    crop = he[r0:r1, c0:c1]
    ax.imshow(
        crop,
        extent=((c0 - 0.5) * scale, (c1 - 0.5) * scale, (r1 - 0.5) * scale, (r0 - 0.5) * scale),
        interpolation="antialiased",
    )


def _frame(ax, box, title: str, colour: str | None = None) -> None:
    y0, y1, x0, x1 = box
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)
    ax.set_aspect("equal")
    ax.set_facecolor(BACKGROUND)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10, color=colour or "black")
    if colour:
        for s in ax.spines.values():
            s.set_edgecolor(colour)
            s.set_linewidth(2)


#: Scale-bar lengths to choose from (micrometres).
BAR_UM = (10, 20, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000)


def bar_length_um(width_um: float) -> float:
    """The longest round length at most a quarter of ``width_um`` (the smallest one if none is)."""
    fits = [b for b in BAR_UM if b <= width_um / 4]
    return float(fits[-1] if fits else BAR_UM[0])


def draw_scale_bar(ax, box) -> None:
    """A micrometre scale bar at the bottom left of a panel in micrometres (``box`` = (y0, y1, x0, x1))."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    length = bar_length_um(box[3] - box[2])
    label = f"{length / 1000:g} mm" if length >= 1000 else f"{length:g} µm"
    bar = AnchoredSizeBar(
        ax.transData,
        length,
        label,
        "lower left",
        pad=0.3,
        borderpad=0.4,
        sep=3,
        frameon=True,
        size_vertical=0,
        fontproperties={"size": 7},
    )
    bar.patch.set(facecolor="white", alpha=0.75, edgecolor="none")  # readable over dark tissue
    ax.add_artist(bar)


def gene_panel(maps: SessionMaps, gene: str, labels: list[str] | None = None, panel_in: float = 2.8) -> bytes:
    """PNG of one gene: H&E crop (when the slide has one), measured, arm 0, arm 1; one contrast.

    ``labels`` name the two arms (default: "map 1", "map 2"); the measured panel is left out when an
    arm is the measured map itself.
    """
    labels = labels or ["map 1", "map 2"]
    limits = maps.limits(gene)
    panels: list[tuple[str, object, str | None]] = []
    he = maps.he()
    arms_measured = [a.kind == "measured" for a in maps.session.arms]
    if not any(arms_measured):
        panels.append(("measured", "measured", None))
    for k in range(2):
        panels.append((labels[k], k, ARM_COLOURS[k]))
    images = {key: maps.image(key, gene) for _, key, _ in panels}
    box = _union([world_bounds(*images[key]) for _, key, _ in panels])
    if box is None:
        box = (0.0, 1.0, 0.0, 1.0)
    y0, y1, x0, x1 = box
    pad = 0.03 * max(y1 - y0, x1 - x0)
    box = (y0 - pad, y1 + pad, x0 - pad, x1 + pad)
    aspect = (box[1] - box[0]) / max(1e-9, box[3] - box[2])
    n = len(panels) + (he is not None)
    height = min(3.2, max(1.4, panel_in * aspect)) + 0.45
    fig = _figure(panel_in * n + 0.9, height)
    gs = fig.add_gridspec(
        1, n + 1, width_ratios=[1] * n + [0.08], left=0.01, right=0.93, top=0.86, bottom=0.03, wspace=0.06
    )
    col = 0
    if he is not None:
        ax = fig.add_subplot(gs[0, col])
        draw_he(ax, he[0], he[1], box)
        _frame(ax, box, "H&E")
        if maps.units == "um":
            draw_scale_bar(ax, box)
        col += 1
    im = None
    for title, key, colour in panels:
        ax = fig.add_subplot(gs[0, col])
        if he is not None:
            draw_he(ax, he[0], he[1], box)
            ax.imshow(
                np.ones((1, 1, 4)) * np.array([1, 1, 1, 0.55]), extent=(box[2], box[3], box[1], box[0])
            )  # fade the H&E under the map
        im = draw_map(ax, *images[key], limits)
        _frame(ax, box, title, colour)
        if he is None and col == 0 and maps.units == "um":  # no H&E panel: the bar on the first map
            draw_scale_bar(ax, box)
        col += 1
    cax = fig.add_subplot(gs[0, n])
    cb = fig.colorbar(im, cax=cax)
    cb.ax.tick_params(labelsize=7)
    cb.set_label("log-norm.", fontsize=7)
    return png_bytes(fig)


def preference_chart(summary: dict) -> bytes:
    """PNG: per gene (and overall) the shares preferring each arm and "can't tell", as stacked bars."""
    arms = summary["arms"]
    rows = [("overall", summary["overall"])] + list(summary["per_gene"].items())
    rows = [(g, r) for g, r in rows if r["n"]]
    h = 0.8 + 0.24 * max(1, len(rows))
    fig = _figure(7.0, h)
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.2, right=0.97, top=1 - 0.45 / h, bottom=0.3 / h)
    y = np.arange(len(rows))[::-1]
    left = np.zeros(len(rows))
    parts = [(arms[0], ARM_COLOURS[0]), ("can't tell", CANT_TELL_COLOUR), (arms[1], ARM_COLOURS[1])]
    for label, colour in parts:
        if label == "can't tell":
            share = np.array([r["cant_tell"]["share"] or 0 for _, r in rows])
        else:
            share = np.array([r["prefer"][label]["share"] or 0 for _, r in rows])
        ax.barh(y, share, left=left, color=colour, label=label, height=0.72)
        left += share
    ax.set_yticks(y)
    ax.set_yticklabels([f"{g} (n={r['n']})" for g, r in rows], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
    ax.set_xticklabels(["0%", "25%", "50%", "75%", "100%"], fontsize=8)
    ax.axvline(0.5, color="black", lw=0.6, ls=":")
    ax.legend(ncol=3, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    return png_bytes(fig)
