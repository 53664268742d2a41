"""Imputed results: :class:`ImputedResult` (values on the x2 dense grid, as an AnnData with
provenance) and atomic ``.h5ad`` writes that never overwrite the input slide. No torch here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ... import __version__
from ..checks import atomic_write
from ..checks import check_output_path as _check_output


@dataclass
class ImputedResult:
    """Imputed values on the x2 dense grid.

    Attributes
    ----------
    genes
        Gene names (columns of :attr:`values`).
    dense_rows, dense_cols
        (n,) int dense-grid coordinates (measured spots at ``(2 row, 2 col)``).
    measured
        (n,) bool: the position is a measured spot (its values are the measured ones, exactly).
    values
        (n, G) float32 log-normalised values.
    xy_px
        (n, 2) full-resolution pixel ``(x, y)``, or ``None`` when the slide has no pixel positions.
    kind
        Lattice kind.
    grid_to_world
        3x3 affine of the *measured* grid ``(row, col, 1) -> (y, x, 1)`` world.
    units
        World units.
    model_values
        (n, G) the network's output at every position, measured spots included (smoother than the
        measured values there; for display and inspection), or ``None``.
    """

    genes: list
    dense_rows: np.ndarray
    dense_cols: np.ndarray
    measured: np.ndarray
    values: np.ndarray
    xy_px: np.ndarray | None
    kind: str = "square"
    grid_to_world: np.ndarray = field(default_factory=lambda: np.eye(3))
    units: str = "pitch"
    model_values: np.ndarray | None = None

    def grid(self, source: str = "values"):
        """The result as a :class:`~napari_s2s.core.data.slide.GeneGrid` on the dense grid.

        ``source="model"`` takes :attr:`model_values` (the network's output at measured spots too)
        instead of :attr:`values` (the measured values exactly there), when there are any.
        """
        if source not in ("values", "model"):
            raise ValueError(f"source must be 'values' or 'model', not {source!r}")
        shown = self.model_values if source == "model" and self.model_values is not None else self.values
        from ..data.slide import GeneGrid

        r0, c0 = int(self.dense_rows.min()), int(self.dense_cols.min())
        h = int(self.dense_rows.max()) - r0 + 1
        w = int(self.dense_cols.max()) - c0 + 1
        ii = self.dense_rows - r0
        jj = self.dense_cols - c0
        vals = np.full((len(self.genes), h, w), np.nan, np.float32)
        vals[:, ii, jj] = np.asarray(shown).T
        tissue = np.zeros((h, w), bool)
        tissue[ii, jj] = True
        if self.kind == "hex":
            parity = int((self.dense_rows[0] + self.dense_cols[0]) % 2)
            rr, cc = np.mgrid[r0 : r0 + h, c0 : c0 + w]
            nodes = (rr + cc) % 2 == parity
        else:
            nodes = np.ones((h, w), bool)
        half = np.diag([0.5, 0.5, 1.0])
        shift = np.eye(3)
        shift[0, 2], shift[1, 2] = r0, c0
        return GeneGrid(
            values=vals,
            genes=list(self.genes),
            kind=self.kind,
            origin=(r0, c0),
            lattice_nodes=nodes,
            tissue=tissue,
            index_to_world=np.asarray(self.grid_to_world) @ half @ shift,
            units=self.units,
            spot_ij=np.stack([ii, jj], 1),
        )

    def to_anndata(self, slide, config, seconds: float, device: str | None = None):
        """AnnData per the CLI contract (obs ``s2s_measured``, dense ``array_row``/``array_col``, ...)."""
        import anndata as ad
        import pandas as pd

        obs = pd.DataFrame(
            {
                "s2s_measured": self.measured.astype(bool),
                "array_row": self.dense_rows.astype(np.int64),
                "array_col": self.dense_cols.astype(np.int64),
                "in_tissue": np.ones(len(self.dense_rows), np.int64),
            },
            index=[f"s2s_{r}_{c}" for r, c in zip(self.dense_rows, self.dense_cols)],
        )
        var = pd.DataFrame(index=pd.Index([str(g) for g in self.genes]))
        adata = ad.AnnData(X=np.asarray(self.values, np.float32), obs=obs, var=var)
        if self.model_values is not None:  # the network's output at every position (X keeps measured values)
            adata.layers["s2s_model"] = np.asarray(self.model_values, np.float32)
        if self.xy_px is not None:
            adata.obsm["spatial"] = np.asarray(self.xy_px, np.float64)
        if slide.images or slide.scalefactors:
            lib = slide.library_id or "s2s"
            sfs = dict(slide.metadata.get("scalefactors", {}) or {})
            for k, f in slide.scalefactors.items():
                sfs[f"tissue_{k}_scalef"] = float(f)
            if slide.spot_diameter_px is not None:
                sfs["spot_diameter_fullres"] = float(slide.spot_diameter_px)
            adata.uns["spatial"] = {lib: {"images": dict(slide.images), "scalefactors": sfs, "metadata": {}}}
        adata.uns["s2s"] = {
            "version": __version__,
            "config": _jsonable(config.to_dict()),
            "genes": [str(g) for g in self.genes],
            "seed": int(config.seed),
            "device": str(device or config.device),
            "seconds": float(seconds),
            "source": str(slide.source) if slide.source else "",
            "lattice": self.kind,
            "pitch_um": slide.geometry.pitch_um,
            "dense_grid": "x2: measured spot (row, col) at (2*row, 2*col)",
        }
        return adata


def _jsonable(d: dict) -> dict:
    """Config dict for AnnData ``uns`` (None -> "none", tuples -> lists)."""
    out = {}
    for k, v in d.items():
        if v is None:
            out[k] = "none"
        elif isinstance(v, (list, tuple)):
            out[k] = [float(x) for x in v]
        else:
            out[k] = v
    return out


def check_output_path(out_path: str | Path, source: str | Path | None = None, allow_store: bool = False) -> Path:
    """Validate an output path before any work is done (see :func:`napari_s2s.core.checks.check_output_path`).

    ``allow_store``: the output is a folder store (SpatialData ``.zarr``); an existing zarr store is
    replaced, any other existing folder is refused.

    Raises
    ------
    SlideError
        When the output is the input slide (or inside an input folder, or a store holding it), is a
        folder (other than a zarr store with ``allow_store``), its folder does not exist, or nothing
        can be written there.
    """
    return _check_output(out_path, inputs=[source], option="output", store=allow_store)


def write_imputed(adata, out_path: str | Path, source: str | Path | None = None) -> Path:
    """Write an imputed AnnData to ``out_path`` atomically (temporary file, then rename; the file gets
    the mode a normal write gives under the umask).

    Parameters
    ----------
    adata
        The AnnData to write.
    out_path
        Destination ``.h5ad``.
    source
        The input slide's path; the write is refused when ``out_path`` is (or is inside) it.
        Defaults to ``adata.uns['s2s']['source']`` when present.
    """
    if source is None:
        source = (adata.uns.get("s2s", {}) or {}).get("source") or None
    out = check_output_path(out_path, source)
    return atomic_write(out, lambda tmp: adata.write_h5ad(tmp))
