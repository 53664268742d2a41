"""The maps a session compares, loaded from its files: per arm and gene an image and its affine.

:func:`load_maps` reads the slide (H&E, measured values) and each arm's file, checks that every gene
of the session is there, and returns :class:`SessionMaps`, which both the blinded reader view and
the report draw from: :meth:`SessionMaps.image` (a 2-D image with its index -> world affine, hex
lattices as bricks) and :meth:`SessionMaps.limits` (one contrast for both maps of a gene).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.slide import GeneGrid, Slide
from ..errors import SessionError, SlideError
from .session import Arm, ReviewSession

#: ``uns`` key of hold-out map files (the provenance of a hold-out prediction).
HOLDOUT_KEY = "s2s_holdout"


@dataclass
class SessionMaps:
    """A session's maps in memory.

    Attributes
    ----------
    session
        The session.
    slide
        The slide (H&E image, geometry, measured values).
    grids
        Per arm (session order), the arm's values of the session's genes.
    measured
        The slide's measured values of the session's genes, on its own grid.
    """

    session: ReviewSession
    slide: Slide
    grids: list[GeneGrid]
    measured: GeneGrid

    def image(self, arm: int | str, gene: str) -> tuple[np.ndarray, np.ndarray]:
        """``(image (H, W) float32 with NaN off tissue, 3x3 affine (i, j, 1) -> world (y, x, 1))``.

        ``arm`` is an arm's index, or ``"measured"`` for the slide's own measured map.
        """
        grid = self.measured if arm == "measured" else self.grids[int(arm)]
        data, affine = grid.display()
        return data[grid.genes.index(gene)], affine

    def limits(self, gene: str) -> tuple[float, float]:
        """One contrast for a gene's two maps: ``(0, 99th percentile of their positive values)``.

        The same rule as the dock's layers (:func:`napari_s2s.gui.layers.gene_limits`, positive
        values so that lowly expressed genes stay visible), over both arms together.
        """
        vals = np.concatenate([self.image(k, gene)[0].ravel() for k in range(len(self.grids))])
        pos = vals[np.isfinite(vals) & (vals > 0)]
        high = float(np.percentile(pos, 99)) if pos.size else 1.0
        return 0.0, high if high > 0 else 1.0

    def he(self) -> tuple[np.ndarray, float] | None:
        """``(RGB image, world units per pixel)`` of the slide's best H&E, or ``None``."""
        name = self.slide.best_image()
        if name is None:
            return None
        return self.slide.images[name], float(self.slide.image_scale(name))

    @property
    def units(self) -> str:
        return self.slide.geometry.units


def load_maps(session: ReviewSession) -> SessionMaps:
    """Read a session's slide and arm files.

    Raises
    ------
    SessionError
        A file moved, changed, is not what the arm says, or lacks some of the session's genes (one
        line naming the file).
    SlideError
        The slide itself is unreadable (naming it).
    """
    from ..data.io import read_slide
    from .files import slide_reading

    slide_path = session.slide_path()
    for arm in session.arms:  # every file's existence and hash before the slow reads
        if arm.kind != "measured":
            session.arm_path(arm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slide = read_slide(slide_path, **slide_reading(session.slide.get("reading")))
    genes = list(session.genes)
    try:
        measured = slide.grid(genes)
    except SlideError as exc:
        raise SessionError(slide_path, f"genes of the session missing from the slide ({exc.problem})") from None
    grids = [_arm_grid(session, arm, slide, measured, genes) for arm in session.arms]
    return SessionMaps(session=session, slide=slide, grids=grids, measured=measured)


def _arm_grid(session: ReviewSession, arm: Arm, slide: Slide, measured: GeneGrid, genes: list[str]) -> GeneGrid:
    if arm.kind == "measured":
        return measured
    path = session.arm_path(arm)
    if arm.kind == "result":
        return read_result(path, genes).grid(genes)
    return holdout_grid(path, slide, measured, genes)


def read_result(path: str | Path, genes: list[str] | None = None) -> Slide:
    """A napari-s2s result file as a :class:`Slide`, checked to hold ``genes``.

    Raises
    ------
    SessionError
        Not a napari-s2s result, or genes missing from it (naming the file and the genes).
    """
    from ..data.io import read_slide

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = read_slide(path)
    if not res.is_imputed_result:
        raise SessionError(path, "not a napari-s2s result (no uns['s2s'] and obs['s2s_measured']): give imputed maps")
    missing = [g for g in (genes or []) if g not in set(res.genes)]
    if missing:
        raise SessionError(path, f"{len(missing)} gene(s) of the session missing from this result: {_names(missing)}")
    return res


def holdout_grid(path: str | Path, slide: Slide, measured: GeneGrid, genes: list[str]) -> GeneGrid:
    """A hold-out prediction file (see :func:`.create.holdout_adata`) laid on the slide's grid."""
    import anndata

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            adata = anndata.read_h5ad(path)
    except Exception as exc:  # anndata raises many types on corrupt input
        raise SessionError(path, f"not a readable .h5ad file ({type(exc).__name__})") from None
    if HOLDOUT_KEY not in adata.uns:
        raise SessionError(path, f"not a napari-s2s hold-out map file (no uns['{HOLDOUT_KEY}'])")
    use = slide.usable()
    if list(map(str, adata.obs_names)) != list(map(str, slide.barcodes[use])):
        raise SessionError(path, f"hold-out maps of another slide (its spots are not those of {slide.source})")
    var = list(map(str, adata.var_names))
    missing = [g for g in genes if g not in var]
    if missing:
        raise SessionError(path, f"{len(missing)} gene(s) of the session missing from these maps: {_names(missing)}")
    x = np.asarray(adata[:, genes].X, dtype=np.float32)
    values = np.full_like(measured.values, np.nan)
    ii, jj = measured.spot_ij[:, 0], measured.spot_ij[:, 1]
    values[:, ii, jj] = x.T
    return GeneGrid(
        values=values,
        genes=list(genes),
        kind=measured.kind,
        origin=measured.origin,
        lattice_nodes=measured.lattice_nodes,
        tissue=measured.tissue,
        index_to_world=measured.index_to_world,
        units=measured.units,
        spot_ij=measured.spot_ij,
    )


def _names(genes: list[str], n: int = 8) -> str:
    return ", ".join(genes[:n]) + (" ..." if len(genes) > n else "")
