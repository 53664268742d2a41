"""The slide model: counts, genes, lattice geometry, tissue, H&E images and their scale.

A :class:`Slide` is what every reader returns and what every other part (benchmark, training,
imputation, the napari layers) consumes. It knows how to log-normalise its counts and lay genes out
on the spot grid (:class:`GeneGrid`), with the transform from grid indices to world coordinates.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..errors import SlideError
from .lattice import Geometry, build_geometry


@dataclass
class GeneGrid:
    """Genes laid out on the spot grid.

    The grid is indexed by array coordinates minus :attr:`origin`: index ``(i, j)`` is the spot at
    ``(row, col) = (i + origin[0], j + origin[1])``. For hex lattices this "raw" grid is a
    checkerboard: only nodes with the lattice's parity of ``row + col`` exist
    (:attr:`lattice_nodes`); :meth:`display` turns it into a brick image for viewing.

    Attributes
    ----------
    values
        (genes, H, W) float32 log-normalised values; NaN where there is no usable spot.
    genes
        Gene names, one per channel.
    kind
        ``"hex"`` or ``"square"``.
    origin
        ``(row, col)`` of grid index ``(0, 0)``.
    lattice_nodes
        (H, W) bool: positions that exist on the lattice.
    tissue
        (H, W) bool: positions holding a usable spot (in tissue, at least one count).
    index_to_world
        3x3 affine from ``(i, j, 1)`` to world ``(y, x, 1)`` in :attr:`units`.
    units
        ``"um"``, ``"pixel"`` or ``"pitch"``.
    spot_ij
        (n_usable, 2) grid index of each usable spot, in the order of :meth:`Slide.usable`.
    """

    values: np.ndarray
    genes: list[str]
    kind: str
    origin: tuple[int, int]
    lattice_nodes: np.ndarray
    tissue: np.ndarray
    index_to_world: np.ndarray
    units: str
    spot_ij: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape[1], self.values.shape[2]

    def display(self, values: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Image to show and its 3x3 affine (index -> world).

        Square lattices are shown as they are. Hex lattices become brick images one pixel wider:
        each node is painted two pixels wide (its column and the next), so rows interleave at their
        true half-pitch offsets; the affine shifts columns by half a pixel so that a node's centre
        lands on its physical position.
        """
        vals = self.values if values is None else values
        if self.kind != "hex":
            return vals, self.index_to_world.copy()
        g, h, w = vals.shape
        out = np.full((g, h, w + 1), np.nan, dtype=vals.dtype)
        out[:, :, :w] = np.where(self.lattice_nodes, vals, np.nan)
        holes = ~np.concatenate([self.lattice_nodes, np.zeros((h, 1), bool)], axis=1)
        left = np.concatenate([np.full((g, h, 1), np.nan, vals.dtype), out[:, :, :w]], axis=2)
        out = np.where(holes[None], left, out)
        shift = np.eye(3)
        shift[1, 2] = -0.5
        return out, self.index_to_world @ shift


@dataclass
class Slide:
    """One spatial transcriptomics slide.

    Attributes
    ----------
    counts
        (spots, genes) raw counts, float32 CSR.
    genes
        Gene names (unique).
    barcodes
        Spot identifiers.
    array_row, array_col
        Integer array coordinates of the spots.
    in_tissue
        Bool per spot.
    pixel_xy
        (spots, 2) full-resolution pixel ``(x, y)`` (NaN where unknown), or ``None``.
    images
        H&E images by name (``"hires"``, ``"lowres"``, ...), (H, W, 3) uint8.
    scalefactors
        Image name -> factor from full-resolution pixels to that image's pixels.
    spot_diameter_px
        Spot diameter in full-resolution pixels as given by the source (10x: a 65 um circle).
    geometry
        Lattice kind, grid -> pixel affine, pitch and units.
    library_id
        Library id (``uns['spatial']`` key), or ``None``.
    source
        Path the slide was read from.
    n_spots_total
        Rows of the positions table (or obs) in the source, in tissue or not.
    values_are_lognorm
        ``True`` for a slide whose ``counts`` already hold log-normalised values (an imputed result
        written by napari-s2s, reopened): :meth:`lognorm` then returns them unchanged.
    """

    counts: sp.csr_matrix
    genes: np.ndarray
    barcodes: np.ndarray
    array_row: np.ndarray
    array_col: np.ndarray
    in_tissue: np.ndarray
    pixel_xy: np.ndarray | None = None
    images: dict[str, np.ndarray] = field(default_factory=dict)
    scalefactors: dict[str, float] = field(default_factory=dict)
    spot_diameter_px: float | None = None
    geometry: Geometry | None = None
    library_id: str | None = None
    source: str | None = None
    n_spots_total: int | None = None
    metadata: dict = field(default_factory=dict)
    values_are_lognorm: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.counts, sp.csr_matrix) and self.counts.dtype == np.float32):
            self.counts = sp.csr_matrix(self.counts, dtype=np.float32)  # (a copy: only when needed)
        if not self.counts.has_canonical_format:  # sorted, no duplicates: views may share its indices
            self.counts.sum_duplicates()
        self.genes = np.asarray(self.genes, dtype=object).astype(str)
        self.barcodes = np.asarray(self.barcodes).astype(str)
        self.array_row = np.asarray(self.array_row, dtype=np.int64)
        self.array_col = np.asarray(self.array_col, dtype=np.int64)
        self.in_tissue = np.asarray(self.in_tissue, dtype=bool)
        if self.n_spots_total is None:
            self.n_spots_total = int(self.counts.shape[0])
        if self.geometry is None:
            self.geometry = build_geometry(self.array_row, self.array_col, self.pixel_xy)
        self._lognorm_cache: dict[str, np.ndarray] = {}
        self._usable: np.ndarray | None = None
        self._scale: np.ndarray | None = None
        self._top_cache: dict = {}

    # ------------------------------------------------------------------ basic facts
    @property
    def kind(self) -> str:
        """Lattice kind, ``"hex"`` or ``"square"``."""
        return self.geometry.kind

    @property
    def n_spots(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_genes(self) -> int:
        return int(self.counts.shape[1])

    @property
    def is_imputed_result(self) -> bool:
        """Whether this "slide" is a reopened napari-s2s result (x2 dense grid, log-normalised values)."""
        return isinstance(self.metadata.get("s2s"), dict)

    def result_genes(self) -> list[str]:
        """The imputed genes of a reopened result (``[]`` for a measured slide)."""
        if not self.is_imputed_result:
            return []
        known = set(map(str, self.genes))
        listed = self.metadata["s2s"].get("genes")
        listed = [] if listed is None else [str(g) for g in np.atleast_1d(listed)]
        return [g for g in listed if g in known] or [str(g) for g in self.genes]

    def result_measured(self) -> np.ndarray | None:
        """Per spot, whether a reopened result's position was a measured spot (``None`` if unknown)."""
        m = self.metadata.get("s2s_measured")
        return None if m is None else np.asarray(m, bool)

    @property
    def name(self) -> str:
        """Short name for tables: library id, else the file stem."""
        return slide_name(self.source, self.library_id)

    @property
    def imputed_from(self) -> str | None:
        """The source (path) of the slide a reopened result was imputed from, if it says so."""
        src = self.metadata["s2s"].get("source") if self.is_imputed_result else None
        return str(src) if src else None

    def usable(self) -> np.ndarray:
        """Bool per spot: in tissue with at least one count (the spots every method works on)."""
        if self._usable is None:
            if self.values_are_lognorm:
                self._usable = self.in_tissue.copy()
            else:
                totals = np.asarray(self.counts.sum(axis=1)).ravel()
                self._usable = self.in_tissue & (totals >= 1)
        return self._usable

    def grid_extent(self) -> tuple[int, int]:
        """``[rows, cols]`` spanned by in-tissue spots in array coordinates."""
        r = self.array_row[self.in_tissue]
        c = self.array_col[self.in_tissue]
        if r.size == 0:
            return (0, 0)
        return (int(r.max() - r.min() + 1), int(c.max() - c.min() + 1))

    def reading(self) -> dict:
        """How this slide was read, as :func:`~napari_s2s.core.data.io.read_slide` keywords that read it
        the same way again: the bin size and what was binned (Xenium, Visium HD, SpatialData cells),
        ``{}`` for formats without such options."""
        out = {}
        if self.metadata.get("bin_um") is not None:
            out["bin_um"] = float(self.metadata["bin_um"])
        if self.metadata.get("counts_from") in ("cells", "transcripts"):
            out["counts_from"] = str(self.metadata["counts_from"])
        return out

    def best_image(self) -> str | None:
        """Name of the highest-resolution image (``hires`` before ``lowres``), or ``None``."""
        if not self.images:
            return None
        return max(self.images, key=lambda k: self.scalefactors.get(k, 0.0))

    # ------------------------------------------------------------------ genes
    def gene_indices(self, names: list[str] | tuple[str, ...]) -> np.ndarray:
        """Column indices of genes by name; unknown names raise :class:`SlideError` with close matches."""
        lookup = {g: i for i, g in enumerate(self.genes)}
        missing = [n for n in names if n not in lookup]
        if missing:
            upper = {g.upper(): g for g in self.genes}
            hints = []
            for m in missing[:5]:
                if m.upper() in upper:
                    hints.append(f"{m} -> {upper[m.upper()]}")
                    continue
                close = difflib.get_close_matches(m, list(self.genes), n=3, cutoff=0.6)
                hints.append(f"{m} -> {', '.join(close)}" if close else f"{m} -> no close match")
            raise SlideError(
                self.source,
                f"unknown gene name(s): {', '.join(missing[:10])}"
                f"{' ...' if len(missing) > 10 else ''} (close matches: {'; '.join(hints)})",
            )
        return np.array([lookup[n] for n in names], dtype=np.int64)

    def size_factors(self) -> np.ndarray:
        """Per-usable-spot scale: median total of usable spots / spot total."""
        if self._scale is None and self.values_are_lognorm:
            self._scale = np.ones(int(self.usable().sum()))
        if self._scale is None:  # row totals first, then the usable rows (no copy of the matrix)
            totals = np.asarray(self.counts.sum(axis=1), dtype=np.float64).ravel()[self.usable()]
            # no usable spot (e.g. an all-zero matrix): no scale, and no "mean of empty slice" warning
            self._scale = np.median(totals) / totals if totals.size else totals
        return self._scale

    def lognorm(self, genes: list[str] | None = None, spots: np.ndarray | None = None) -> np.ndarray:
        """Log-normalised values (usable spots x genes), float32.

        Library size normalised to the median total of the usable spots, then ``log1p``. This is
        the one definition used everywhere (benchmark, training, saved results).

        Parameters
        ----------
        genes
            Gene names; all genes when ``None`` (dense: mind the memory on big panels).
        spots
            Optional bool mask over the usable spots, to return a subset of rows.
        """
        if genes is not None:  # the genes' columns first: never a copy of the whole matrix
            x = self.counts[:, self.gene_indices(list(genes))][self.usable()]
        else:
            x = self.counts[self.usable()]
        scale = self.size_factors()
        if spots is not None:
            x = x[spots]
            scale = scale[spots]
        if self.values_are_lognorm:
            return sp.csr_matrix(x).toarray().astype(np.float32)
        x = sp.csr_matrix(x.multiply(scale[:, None]), dtype=np.float64)
        x.data = np.log1p(x.data)
        return x.toarray().astype(np.float32)

    def lognorm_sparse(self, spots: np.ndarray | None = None) -> sp.csr_matrix:
        """Like :meth:`lognorm` over all genes, kept sparse (float32 CSR).

        Memory: one float32 value per stored count (and a copy of the column indices only when some
        spots are left out); the float64 intermediate is computed in blocks of rows.
        """
        use = self.usable()
        x = self.counts if use.all() else self.counts[use]
        scale = self.size_factors()
        if spots is not None:
            x = x[spots]
            scale = scale[spots]
        if self.values_are_lognorm:
            return sp.csr_matrix(x, dtype=np.float32, copy=True)
        data = np.empty(x.nnz, np.float32)
        for r0, r1 in _row_blocks(x.indptr):
            a, b = int(x.indptr[r0]), int(x.indptr[r1])
            s = np.repeat(scale[r0:r1], np.diff(x.indptr[r0 : r1 + 1]))
            data[a:b] = np.log1p(x.data[a:b].astype(np.float64) * s)
        return sp.csr_matrix((data, x.indices, x.indptr), shape=x.shape)

    def top_variable_genes(self, n: int = 30, spots: np.ndarray | None = None, min_detected: float = 0.10) -> list[str]:
        """The ``n`` genes with the highest variance of log-normalised values.

        Only genes detected (count > 0) in at least ``min_detected`` of the spots are eligible;
        ties are broken by name. ``spots`` is a bool mask over the usable spots (the benchmark
        passes the measured ones). The per-gene statistics over all usable spots are computed once
        per slide (the reader, the widget and the CLI ask for them in turn).
        """
        stats = self._top_cache.get("all") if spots is None else None
        if stats is None:
            use = self.usable()
            x = self.counts if use.all() else self.counts[use]
            scale = self.size_factors()
            if spots is not None:
                x, scale = x[spots], scale[spots]
            stats = _gene_stats(x, None if self.values_are_lognorm else scale)
            if spots is None:
                self._top_cache["all"] = stats
        if stats is None:
            return []
        detected, var = stats
        eligible = np.flatnonzero(detected >= min_detected)
        order = sorted(eligible, key=lambda i: (-round(float(var[i]), 10), self.genes[i]))
        return [str(self.genes[i]) for i in order[:n]]

    # ------------------------------------------------------------------ grids
    def grid(self, genes: list[str]) -> GeneGrid:
        """Lay the log-normalised values of ``genes`` out on the spot grid (see :class:`GeneGrid`)."""
        use = self.usable()
        values = self.lognorm(list(genes)) if len(genes) else np.zeros((int(use.sum()), 0), np.float32)
        return grid_from_spots(
            self.array_row[use],
            self.array_col[use],
            values,
            genes,
            self.kind,
            self.geometry,
            box=(self.array_row, self.array_col),
        )

    def image_scale(self, name: str) -> float:
        """World units per pixel of image ``name``."""
        return self.geometry.px_to_world_scale() / self.scalefactors[name]

    def spot_world(self) -> np.ndarray:
        """(spots, 2) world ``(y, x)`` of every spot from its array coordinates (the fitted lattice)."""
        a = self.geometry.grid_to_world()
        pts = np.stack([self.array_row, self.array_col, np.ones(self.n_spots)]).astype(np.float64)
        return (a @ pts)[:2].T


def check_counts(counts: sp.spmatrix, path: str | None) -> None:
    """Raise :class:`SlideError` for NaN, infinite or negative counts, naming how many and where."""
    m = sp.csr_matrix(counts)
    data = m.data
    bad_nan = ~np.isfinite(data)
    bad_neg = data < 0
    for mask, what in ((bad_nan, "NaN or infinite"), (bad_neg, "negative")):
        if mask.any():
            rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))[mask]
            n_spots = np.unique(rows).size
            first = int(rows[0])
            raise SlideError(
                path,
                f"{int(mask.sum())} {what} count value(s) in X, in {n_spots} spot(s) (first at spot index {first})",
            )


#: Stored values per block when a big matrix is processed in blocks of rows (bounds the float64
#: intermediates to ~64 MB).
_BLOCK_NNZ = 8_000_000


def _row_blocks(indptr: np.ndarray, block_nnz: int = _BLOCK_NNZ):
    """``(r0, r1)`` row ranges of a CSR matrix holding about ``block_nnz`` stored values each."""
    n = len(indptr) - 1
    r0 = 0
    while r0 < n:
        r1 = int(np.searchsorted(indptr, indptr[r0] + block_nnz, side="right")) - 1
        r1 = min(max(r1, r0 + 1), n)
        yield r0, r1
        r0 = r1


def _gene_stats(counts: sp.csr_matrix, scale: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Per gene over the rows of ``counts``: fraction detected (> 0) and variance of the
    log-normalised values ``log1p(count * scale[row])`` (the values themselves when ``scale`` is
    ``None``).

    The same numbers, to the last bit, as ``(x > 0).mean(0)`` and ``mean(x * x) - mean(x) ** 2`` with
    scipy's float32 means of the log-normalised matrix ``x`` (each value times ``1/m``, summed per
    column in row order), computed in blocks of rows: no copy of the matrix is made.
    """
    m, g = counts.shape
    if m == 0:
        return None
    detected = np.zeros(g, np.int64)
    mean = np.zeros(g, np.float32)
    sq = np.zeros(g, np.float32)
    inv = 1.0 / m
    for r0, r1 in _row_blocks(counts.indptr):
        a, b = int(counts.indptr[r0]), int(counts.indptr[r1])
        idx = counts.indices[a:b]
        if scale is None:
            v = counts.data[a:b]
        else:
            rep = np.repeat(scale[r0:r1], np.diff(counts.indptr[r0 : r1 + 1]))
            v = np.log1p(counts.data[a:b].astype(np.float64) * rep).astype(np.float32)
        detected += np.bincount(idx[v > 0], minlength=g)
        np.add.at(mean, idx, v * inv)
        np.add.at(sq, idx, (v * v) * inv)
    mean64 = mean.astype(np.float64)
    return detected / m, sq.astype(np.float64) - mean64**2


def slide_name(source, library_id: str | None = None) -> str:
    """Short name of a slide for tables: the file stem (the sample folder for a Space Ranger ``outs/``),
    else the library id."""
    if source:
        from pathlib import Path

        p = Path(source)
        stem = p.name if (p.is_dir() and p.suffix.lower() != ".zarr") or not p.suffix else p.stem
        if stem in ("outs", ""):
            stem = p.parent.name
        return stem
    return library_id or "slide"


def grid_from_spots(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    genes: list[str],
    kind: str,
    geometry: Geometry,
    box: tuple[np.ndarray, np.ndarray] | None = None,
    scale: float = 1.0,
) -> GeneGrid:
    """A :class:`GeneGrid` of ``values`` (n, G) at grid coordinates ``(rows, cols)``.

    ``box``: the coordinates whose bounding box the grid covers (default: ``rows, cols``);
    ``scale``: slide array coordinates per grid step (e.g. 2 for a result's measured lattice, whose
    spot ``(row, col)`` is the x2 dense grid's ``(2 row, 2 col)``). Cells without a spot are NaN.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    br, bc = (rows, cols) if box is None else (np.asarray(box[0], np.int64), np.asarray(box[1], np.int64))
    r0, c0 = int(br.min()), int(bc.min())
    h, w = int(br.max() - r0 + 1), int(bc.max() - c0 + 1)
    ii, jj = rows - r0, cols - c0
    values = np.asarray(values)
    grid = np.full((len(genes), h, w), np.nan, dtype=np.float32)
    if len(genes):
        grid[:, ii, jj] = values.T
    tissue = np.zeros((h, w), dtype=bool)
    tissue[ii, jj] = True
    if kind == "hex":
        rr, cc = np.mgrid[r0 : r0 + h, c0 : c0 + w]
        nodes = (rr + cc) % 2 == int((br[0] + bc[0]) % 2)
    else:
        nodes = np.ones((h, w), dtype=bool)
    to_array = np.array([[scale, 0.0, scale * r0], [0.0, scale, scale * c0], [0.0, 0.0, 1.0]])
    return GeneGrid(
        values=grid,
        genes=list(genes),
        kind=kind,
        origin=(r0, c0),
        lattice_nodes=nodes,
        tissue=tissue,
        index_to_world=geometry.grid_to_world() @ to_array,
        units=geometry.units,
        spot_ij=np.stack([ii, jj], axis=1),
    )
