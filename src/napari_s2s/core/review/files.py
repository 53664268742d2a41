"""Small file helpers of review sessions: atomic writes, JSON reading with one-line errors, hashes,
paths stored relative to a session file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..checks import atomic_write
from ..errors import SessionError


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``
    (:func:`napari_s2s.core.checks.atomic_write`).

    A crash leaves either the old file or the new one, never half of one. A new file gets the mode a
    normal write gives under the umask (readers on a shared drive can read it); an overwritten one keeps
    its mode. An :class:`OSError` is raised as it is.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data

    def dump(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, dump, as_slide_error=False)


def write_json(path: str | Path, record: dict) -> Path:
    """:func:`write_atomic` of a JSON record (UTF-8, indented, keys in insertion order)."""
    return write_atomic(path, json.dumps(record, indent=1, ensure_ascii=False) + "\n")


def read_json(path: str | Path, what: str, fmt: str) -> dict:
    """Read a JSON object carrying ``"format": fmt``.

    Raises
    ------
    SessionError
        Missing or unreadable file, not JSON, not an object, or another format (the message says
        ``not a <what>``).
    """
    path = Path(path)
    if not path.exists():
        raise SessionError(path, f"no such {what}")
    if path.is_dir():
        raise SessionError(path, f"is a folder, not a {what}")
    try:
        text = path.read_text(encoding="utf-8")
        record = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SessionError(path, f"not a {what} (not a JSON file)") from None
    except OSError as exc:
        raise SessionError(path, f"cannot read the {what} ({exc.strerror or exc})") from None
    if not isinstance(record, dict) or record.get("format") != fmt:
        found = record.get("format") if isinstance(record, dict) else None
        extra = f", its format is {found!r}" if found else ""
        raise SessionError(path, f'not a {what} (no "format": "{fmt}"{extra})')
    return record


def sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def stored_path(path: str | Path, base: Path) -> dict:
    """How a session stores a file it points at: relative to the session's folder (found again when
    the folder moves as a whole) and absolute (found when the session file alone is copied)."""
    p = Path(path).expanduser().resolve()
    try:
        rel = os.path.relpath(p, base.resolve())
    except ValueError:  # another drive (Windows)
        rel = str(p)
    return {"path": Path(rel).as_posix(), "abs": str(p)}


def resolve_stored(entry: dict, base: Path) -> Path | None:
    """The existing file a :func:`stored_path` entry names (relative first), or ``None``."""
    rel = entry.get("path")
    if rel:
        p = Path(rel)
        p = p if p.is_absolute() else base / p
        if p.exists():
            return p.resolve()
    if entry.get("abs") and Path(entry["abs"]).exists():
        return Path(entry["abs"])
    return None


def slide_reading(reading: dict | None) -> dict:
    """``read_slide`` keyword arguments from reading options (a result's ``uns['s2s']['reading']``, a
    session's, or the command line's): those that differ from the reader's defaults, as plain numbers
    and strings; unknown keys are dropped."""
    out = {}
    for key, value in dict(reading or {}).items():
        if key in ("pitch_um", "bin_um") and value is not None:
            try:
                out[key] = float(value)
            except (TypeError, ValueError):
                raise SessionError(
                    None, f"reading option {key} must be a number of micrometres, not {value!r}"
                ) from None
        elif key == "counts_from" and value is not None and str(value) != "auto":
            out[key] = str(value)
    return out
