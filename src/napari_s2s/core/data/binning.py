"""Square bins from positions in micrometres: cells or transcripts -> counts on a square lattice.

Platforms that measure cells or single molecules (Xenium; SpatialData tables of cells) hold no spot
lattice. S2S-ST works on one, so such data are binned: bin ``(row, col) = (floor(y / b), floor(x / b))``
for a bin size ``b`` in micrometres, counted from the coordinate origin (for Xenium the top-left
corner of the morphology image), so that the centre of bin ``(row, col)`` is at
``((col + 0.5) b, (row + 0.5) b)`` um. Bins holding nothing are not spots of the slide.

Default bin size: :data:`DEFAULT_BIN_UM` (50 um). A Xenium section holds about 100 transcripts per
100 um^2 (``transcripts_per_100um`` in ``experiment.xenium``), so a 50 um bin gathers ~2,500
transcripts over the panel (a Visium spot ~0.5-1 k UMIs over the transcriptome), and the x2 imputed
grid is 25 um, about two cells across. Smaller bins give finer but noisier maps and more positions.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import SlideError

#: Default bin size in micrometres for platforms without a spot lattice (see the module docstring).
DEFAULT_BIN_UM = 50.0

#: Names of control probes and codewords, never genes: negative control probes and codewords,
#: blank / unassigned / deprecated codewords (Xenium, MERSCOPE ``Blank-``), intergenic and antisense
#: (genomic) control probes, CosMx system controls.
CONTROL_PATTERN = re.compile(
    r"^(NegControl|NegPrb|BLANK_|Blank-|UnassignedCodeword|Unassigned|DeprecatedCodeword|Intergenic|"
    r"antisense_|GenomicControl|SystemControl)"
)

#: 10x's threshold for counting a decoded transcript (the counts in ``cell_feature_matrix.h5``).
MIN_QV = 20.0

# bin keys: (row + _OFF) * _SPAN + (col + _OFF), times _GMAX, plus the gene (fits int64)
_OFF = 1 << 21
_SPAN = 1 << 22
_GMAX = 1 << 16


def is_control(names) -> np.ndarray:
    """Bool per name: a control probe or codeword (see :data:`CONTROL_PATTERN`)."""
    return np.array([bool(CONTROL_PATTERN.match(str(n))) for n in names], dtype=bool)


def check_bin_um(bin_um, path: str | Path | None = None) -> float:
    """The bin size as a float; a bin size that is not a positive finite number is a :class:`SlideError`."""
    try:
        value = float(bin_um)
    except (TypeError, ValueError):
        raise SlideError(path, f"bin size {bin_um!r} is not a number of micrometres") from None
    if not math.isfinite(value) or value <= 0:
        raise SlideError(path, f"bin size must be a positive number of micrometres, not {bin_um!r}")
    return value


def bin_index(x_um: np.ndarray, y_um: np.ndarray, bin_um: float) -> tuple[np.ndarray, np.ndarray]:
    """``(row, col)`` of the bin holding each position."""
    rows = np.floor(np.asarray(y_um, np.float64) / bin_um).astype(np.int64)
    cols = np.floor(np.asarray(x_um, np.float64) / bin_um).astype(np.int64)
    if rows.size and (np.abs(rows).max() >= _OFF or np.abs(cols).max() >= _OFF):
        raise ValueError(f"positions span more than {_OFF} bins of {bin_um:g} um")
    return rows, cols


def bin_centres_px(rows: np.ndarray, cols: np.ndarray, bin_um: float, um_per_px: float) -> np.ndarray:
    """(n, 2) pixel ``(x, y)`` of bin centres in a frame of ``um_per_px`` um per pixel."""
    return np.stack([(cols + 0.5) * bin_um / um_per_px, (rows + 0.5) * bin_um / um_per_px], axis=1)


def bin_cells(
    x_um: np.ndarray, y_um: np.ndarray, counts: sp.spmatrix, bin_um: float
) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
    """Sum cells' counts (cells x genes) into the bins of their centroids.

    Returns the bins' ``rows, cols`` (sorted by row, then column) and their counts (bins x genes,
    float32 CSR). Memory stays near the size of the sparse matrices.
    """
    rows, cols = bin_index(x_um, y_um, bin_um)
    key = (rows + _OFF) * _SPAN + (cols + _OFF)
    ukey, inv = np.unique(key, return_inverse=True)
    n = len(rows)
    member = sp.csr_matrix((np.ones(n, np.float32), (inv.ravel(), np.arange(n))), shape=(len(ukey), n))
    binned = sp.csr_matrix(member @ sp.csr_matrix(counts, dtype=np.float32), dtype=np.float32)
    binned.sum_duplicates()
    return ukey // _SPAN - _OFF, ukey % _SPAN - _OFF, binned


class TranscriptBinner:
    """Counts of streamed molecules (x, y in um, gene) per bin and gene, in bounded memory.

    Feed batches with :meth:`add` (gene names are mapped to columns as they come; controls are
    dropped), then :meth:`result`. Only the distinct (bin, gene) pairs are kept, merged as they
    accumulate.
    """

    def __init__(self, bin_um: float, merge_every: int = 20_000_000):
        self.bin_um = float(bin_um)
        self.genes: list[str] = []
        self._index: dict[str, int] = {}
        self._keys: list[np.ndarray] = []
        self._sums: list[np.ndarray] = []
        self._pending = 0
        self._merge_every = merge_every
        self.n_molecules = 0

    def gene_codes(self, names) -> np.ndarray:
        """Column of each name (``-1`` for controls), adding new gene names as they come."""
        out = np.empty(len(names), np.int64)
        for i, name in enumerate(names):
            name = name.decode() if isinstance(name, bytes) else str(name)
            j = self._index.get(name)
            if j is None:
                if CONTROL_PATTERN.match(name):
                    j = -1
                else:
                    j = len(self.genes)
                    if j >= _GMAX:
                        raise ValueError(f"more than {_GMAX} gene names")
                    self.genes.append(name)
                self._index[name] = j
            out[i] = j
        return out

    def add(self, x_um: np.ndarray, y_um: np.ndarray, codes: np.ndarray) -> None:
        """Add molecules at ``(x_um, y_um)`` of genes ``codes`` (``-1``: left out)."""
        x_um = np.asarray(x_um, np.float64)
        y_um = np.asarray(y_um, np.float64)
        codes = np.asarray(codes, np.int64)
        ok = (codes >= 0) & np.isfinite(x_um) & np.isfinite(y_um)
        if not ok.all():
            x_um, y_um, codes = x_um[ok], y_um[ok], codes[ok]
        if codes.size == 0:
            return
        rows, cols = bin_index(x_um, y_um, self.bin_um)
        key = ((rows + _OFF) * _SPAN + (cols + _OFF)) * _GMAX + codes
        u, c = np.unique(key, return_counts=True)
        self._keys.append(u)
        self._sums.append(c.astype(np.float64))
        self.n_molecules += int(codes.size)
        self._pending += u.size
        if self._pending > self._merge_every:
            self._merge()

    def _merge(self) -> None:
        if len(self._keys) > 1:
            keys = np.concatenate(self._keys)
            u, inv = np.unique(keys, return_inverse=True)
            sums = np.bincount(inv.ravel(), weights=np.concatenate(self._sums), minlength=u.size)
            self._keys, self._sums = [u], [sums]
        self._pending = self._keys[0].size if self._keys else 0

    def result(self) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix, np.ndarray]:
        """``rows, cols`` of the non-empty bins, their counts (bins x genes, float32 CSR; genes in
        alphabetical order) and the gene names."""
        self._merge()
        if not self._keys or self._keys[0].size == 0:
            return (
                np.zeros(0, np.int64),
                np.zeros(0, np.int64),
                sp.csr_matrix((0, 0), dtype=np.float32),
                np.array([], str),
            )
        keys, sums = self._keys[0], self._sums[0]
        bins, gene = keys // _GMAX, keys % _GMAX
        ubins, b = np.unique(bins, return_inverse=True)
        order = np.argsort(np.array(self.genes, dtype=object), kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        counts = sp.csr_matrix(
            (sums.astype(np.float32), (b.ravel(), rank[gene])), shape=(ubins.size, len(self.genes)), dtype=np.float32
        )
        counts.sum_duplicates()
        genes = np.array(self.genes, dtype=object)[order].astype(str)
        return ubins // _SPAN - _OFF, ubins % _SPAN - _OFF, counts, genes
