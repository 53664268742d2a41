"""Reusable checks of inputs and outputs; every failure is one :class:`SlideError` line.

Readers call the value checks on what they read (scale factors, spot diameters, pitches, nested
metadata, array coordinates) so that bad metadata becomes "FILE: FIELD must be ..." instead of a
traceback or a silent zero. Commands call :func:`check_output_path` on every output *before* any long
work (nothing is trained in vain), and write through :func:`write_outputs` / :func:`atomic_write`
(temporary file beside the target, then rename: nothing half-written is left behind, and the file
gets the mode a normal write would give under the user's umask).

Nothing here imports torch, napari or Qt.
"""

from __future__ import annotations

import math
import numbers
import os
import secrets
import stat
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from .errors import SlideError

#: A grid may always hold this many positions, however few spots it has (a 2048 x 2048 grid).
GRID_CELLS_FREE = 1 << 22
#: Beyond :data:`GRID_CELLS_FREE`, a grid may hold at most this many positions per spot. Real lattices
#: fill most of their extent (Visium ~0.4-1, ST ~0.3-1); a grid 64x larger than its spots is an outlier
#: coordinate, and laying genes out on it would allocate memory for nothing.
GRID_CELLS_PER_SPOT = 64
#: Array coordinates beyond this magnitude are refused (they overflow the integer grids).
MAX_ARRAY_COORD = 1 << 30
#: The largest spot pitch accepted, in micrometres (1 cm; real lattices: 2 um Visium HD bins to 200 um ST).
MAX_PITCH_UM = 10_000.0


def _show(value) -> str:
    """Short repr of an offending value for a one-line message."""
    if isinstance(value, np.ndarray):
        text = f"an array of shape {value.shape}" if value.size != 1 else repr(value.ravel()[0].item())
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= 40 else text[:37] + "..."


def as_number(value, path, field: str) -> float:
    """``value`` as a finite float (a real number, or a one-element numeric array), else :class:`SlideError`.

    Booleans and strings are refused: metadata holding ``"0.5"`` or ``True`` where a number belongs is
    corrupt, not a number.
    """
    v = value
    if isinstance(v, np.ndarray) and v.size == 1 and v.dtype.kind in "iuf":
        v = v.ravel()[0].item()
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise SlideError(path, f"{field} must be a number, not {_show(value)}")
    f = float(v)
    if not math.isfinite(f):
        raise SlideError(path, f"{field} must be a finite number, not {_show(value)}")
    return f


def positive_number(value, path, field: str, *, upper: float | None = None) -> float:
    """``value`` as a float when it is a finite number > 0 (and <= ``upper``); else :class:`SlideError`
    naming ``field``.

    For scale factors, spot diameters, pitches: a zero, negative, NaN or infinite value would divide by
    zero or place everything at infinity downstream.
    """
    f = as_number(value, path, field)
    if not f > 0:
        raise SlideError(path, f"{field} must be a positive number, not {_show(value)}")
    if upper is not None and f > upper:
        raise SlideError(path, f"{field} must be at most {upper:g}, not {_show(value)}")
    return f


def optional_positive_number(value, path, field: str, *, upper: float | None = None) -> float | None:
    """:func:`positive_number`, with ``None`` passed through (the field is optional)."""
    return None if value is None else positive_number(value, path, field, upper=upper)


def as_mapping(value, path, field: str, *, optional: bool = True) -> dict:
    """``value`` as a dict (``{}`` for ``None`` when ``optional``), else :class:`SlideError`."""
    if value is None and optional:
        return {}
    if not isinstance(value, Mapping):
        raise SlideError(path, f"{field} must be a mapping (dict), not {type(value).__name__} {_show(value)}")
    return dict(value)


def check_array_coordinates(rows, cols, path, field: str = "array coordinates") -> tuple[np.ndarray, np.ndarray]:
    """Finite integer array coordinates of sane magnitude, as int64; else :class:`SlideError`."""
    r = np.asarray(rows, dtype=np.float64)
    c = np.asarray(cols, dtype=np.float64)
    if not (np.isfinite(r).all() and np.isfinite(c).all()):
        raise SlideError(path, f"{field} have missing or infinite values")
    big = max(float(np.abs(r).max(initial=0)), float(np.abs(c).max(initial=0)))
    if big > MAX_ARRAY_COORD:
        raise SlideError(path, f"{field} reach {big:.3g}: not array coordinates of a spot lattice")
    return np.round(r).astype(np.int64), np.round(c).astype(np.int64)


def check_grid_extent(rows: np.ndarray, cols: np.ndarray, path, field: str = "array coordinates") -> None:
    """Refuse a grid far larger than its spots can fill, before anything is laid out on it.

    A single outlier coordinate (a spot at row 10^9) would otherwise make every per-gene grid, the
    dense x2 grid and the napari layers allocate gigabytes of empty positions.

    Raises
    ------
    SlideError
        When the bounding grid has more than :data:`GRID_CELLS_FREE` positions and more than
        :data:`GRID_CELLS_PER_SPOT` per spot.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    n = int(rows.size)
    if n == 0:
        return
    h = int(rows.max()) - int(rows.min()) + 1
    w = int(cols.max()) - int(cols.min()) + 1
    cells = float(h) * float(w)
    if cells > GRID_CELLS_FREE and cells > GRID_CELLS_PER_SPOT * n:
        raise SlideError(
            path,
            f"{field} span a {h} x {w} grid ({cells:.3g} positions) for {n} spot(s), far more than the "
            f"spots can fill (rows {int(rows.min())}..{int(rows.max())}, cols {int(cols.min())}..{int(cols.max())}); "
            "an outlier coordinate?",
        )


#: A spot farther than this many lattice steps from every other spot is said to be a likely outlier.
ISOLATED_STEPS = 20.0


def warn_isolated_spots(rows: np.ndarray, cols: np.ndarray, path, field: str = "array coordinates") -> int:
    """Warn about spots far from every other one (an outlier coordinate that :func:`check_grid_extent`
    lets through because the grid it makes still fits in memory: one spot moved to row 5000 of a
    30-row slide). Real lattices, detached tissue fragments included, have neighbours one step away.
    Checked only when the grid is mostly empty (a cheap test first). Returns how many were found."""
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    n = int(rows.size)
    if n < 2:
        return 0
    cells = float(rows.max() - rows.min() + 1) * float(cols.max() - cols.min() + 1)
    if cells <= 4.0 * n:
        return 0
    from scipy.spatial import cKDTree

    pts = np.stack([rows, cols], 1).astype(np.float64)
    dist, _ = cKDTree(pts).query(pts, k=2)
    far = np.flatnonzero(dist[:, 1] > ISOLATED_STEPS)
    if far.size:
        shown = ", ".join(f"({rows[i]}, {cols[i]})" for i in far[:3]) + (" ..." if far.size > 3 else "")
        warnings.warn(
            f"{path}: {far.size} spot(s) more than {ISOLATED_STEPS:g} lattice steps from any other, at {field} "
            f"{shown}: an outlier coordinate?",
            stacklevel=2,
        )
    return int(far.size)


# ---------------------------------------------------------------------- outputs
def _same_or_inside(dst: Path, src: Path) -> bool:
    return dst == src or (src.is_dir() and src in dst.parents)


def _is_zarr_store(p: Path) -> bool:
    return p.is_dir() and any((p / m).exists() for m in (".zgroup", "zarr.json"))


def check_output_path(
    out_path, *, inputs: Iterable = (), option: str = "output", store: bool = False, replace: bool = True
) -> Path:
    """Check, before any work, that ``out_path`` can be written; return it as a :class:`Path`.

    The rule for every command: the output's folder must exist (it is never created), be a folder, and
    accept new files; the output must not be a folder, a read-only file, an input, or inside an input
    folder. Writability is probed by creating (and removing) an empty file in the folder, which also
    catches read-only file systems, ``/proc`` and permission rules that mode bits do not show.

    Parameters
    ----------
    out_path
        The output file.
    inputs
        Input paths (files or folders) that must not be overwritten.
    option
        The option's name for messages (``--out``, ``--save-model``, ...).
    store
        The output is a folder store (SpatialData ``.zarr``): an existing zarr store there is replaced
        (never one holding an input), any other existing folder or file is refused.
    replace
        Whether an existing output may be replaced; when not, it is refused with a line naming
        ``--force`` (``impute``: a result, or a whole SpatialData store, is not lost to a typo).

    Raises
    ------
    SlideError
        One line naming the output and why it cannot be written.
    """
    out = Path(out_path).expanduser()
    if str(out_path).strip() == "" or out.name in ("", ".", ".."):
        raise SlideError(None, f"{option}: give a file name (not {str(out_path)!r})")
    if out.is_dir() and not (store and _is_zarr_store(out)):
        if store:
            raise SlideError(out, f"{option} is a folder that is not a zarr store; give a new name such as result.zarr")
        raise SlideError(out, f"{option} is a folder; give a file name such as result.h5ad")
    folder = out.parent
    try:
        is_dir = folder.is_dir()
        exists = is_dir or folder.exists()
    except OSError as exc:
        raise SlideError(out, f"{option}: folder {folder} cannot be used ({exc.strerror or exc})") from None
    if not exists:
        raise SlideError(out, f"{option}: folder {folder} does not exist (create it first)")
    if not is_dir:
        raise SlideError(out, f"{option}: {folder} is not a folder")
    dst = out.resolve()
    for src in inputs:
        if src is None or str(src) == "":
            continue
        s = Path(src).expanduser().resolve()
        if _same_or_inside(dst, s) or (store and dst in s.parents):
            raise SlideError(out, f"{option}: refusing to overwrite the input slide; choose another output path")
    if not replace and (out.is_symlink() or out.exists()):
        raise SlideError(out, f"{option} exists; pass --force to replace it, or choose another name")
    if (out.is_symlink() or out.exists()) and not (store and _is_zarr_store(out)):
        if not out.is_file():
            raise SlideError(out, f"{option} exists and is not a regular file")
        if store:
            raise SlideError(out, f"{option} exists and is a file, not a zarr store")
        if not os.access(out, os.W_OK):
            raise SlideError(out, f"{option} exists and is read-only")
    try:
        probe = _create_temp(out, suffix=".probe")
    except OSError as exc:
        raise SlideError(out, f"{option}: cannot create files in {folder} ({exc.strerror or exc})") from None
    probe.unlink(missing_ok=True)
    return out


def check_distinct_outputs(outputs: Mapping[str, str | Path | None]) -> None:
    """Refuse two options naming the same output file (``{"--out": a, "--save-model": a}``)."""
    seen: dict[Path, str] = {}
    for option, p in outputs.items():
        if p is None:
            continue
        key = Path(p).expanduser().resolve()
        if key in seen:
            raise SlideError(p, f"{option} and {seen[key]} name the same file")
        seen[key] = option


def _create_temp(out: Path, suffix: str = ".tmp") -> Path:
    """Create an empty temporary file beside ``out`` with the mode a normal write gives (0666 & ~umask)."""
    for _ in range(100):
        tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}{suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name beside {out}")


def write_outputs(
    writers: Iterable[tuple[str | Path, Callable[[Path], object]]], *, as_slide_error: bool = True
) -> list[Path]:
    """Write several outputs all-or-nothing: each ``writer(tmp)`` fills a temporary file beside its
    target; only when every one succeeded are they renamed into place.

    A target that exists keeps its permission bits (as a normal overwrite would); a new one gets
    ``0666 & ~umask``. On any failure the temporary files are removed; an :class:`OSError` becomes
    a :class:`SlideError` naming the target (with ``as_slide_error=False`` it is raised as it is, for
    callers such as the napari widgets that report ``OSError`` themselves).

    Returns
    -------
    list of Path
        The targets, in order.
    """
    staged: list[tuple[Path, Path]] = []
    current: Path | None = None
    try:
        for target, writer in writers:
            current = Path(target).expanduser()
            tmp = _create_temp(current)
            staged.append((tmp, current))
            writer(tmp)
            if current.is_file():
                os.chmod(tmp, stat.S_IMODE(current.stat().st_mode))
        for tmp, target in staged:
            current = target
            os.replace(tmp, target)
    except OSError as exc:
        _remove(staged)
        if not as_slide_error:
            raise
        raise SlideError(current, f"cannot write the output ({exc.strerror or exc})") from None
    except BaseException:
        _remove(staged)
        raise
    return [t for _, t in staged]


def atomic_write(target: str | Path, writer: Callable[[Path], object], *, as_slide_error: bool = True) -> Path:
    """:func:`write_outputs` for one file."""
    return write_outputs([(target, writer)], as_slide_error=as_slide_error)[0]


def _remove(staged: list[tuple[Path, Path]]) -> None:
    for tmp, _ in staged:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
