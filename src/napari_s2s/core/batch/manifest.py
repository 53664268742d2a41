"""``manifest.csv``: one row per input slide of a batch, rewritten atomically after every row.

Columns (:data:`COLUMNS`): ``path`` (the input), ``status`` (``done``, ``skipped`` when an up-to-date
result was already there, ``failed``), ``output`` (the result file, empty when failed), ``seconds``
(wall-clock of the task: reading, training, imputing, writing; empty when skipped), ``genes`` (names
separated by ``;``), ``device`` and ``error`` (one line, for failed rows). Rows are in the order of the
inputs; a batch that is stopped keeps the rows of what finished.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..checks import atomic_write

COLUMNS = ("path", "status", "output", "seconds", "genes", "device", "error")
STATUSES = ("done", "skipped", "failed")


class Manifest:
    """The rows of a batch, kept in input order and written to ``path`` after every change.

    Parameters
    ----------
    path
        The CSV file (``DIR/manifest.csv``).
    order
        Input paths in the order rows should appear.
    """

    def __init__(self, path: str | Path, order=()):
        self.path = Path(path)
        self._rank = {str(p): i for i, p in enumerate(order)}
        self.rows: dict[str, dict] = {}

    def add(self, row: dict) -> None:
        """Record (or replace) the row of ``row['path']`` and rewrite the file."""
        if row.get("status") not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {row.get('status')!r}")
        rec = {k: _cell(row.get(k)) for k in COLUMNS}
        self.rows[rec["path"]] = rec
        self.write()

    def counts(self) -> dict[str, int]:
        """``{status: number of rows}``."""
        out = dict.fromkeys(STATUSES, 0)
        for r in self.rows.values():
            out[r["status"]] += 1
        return out

    def write(self) -> Path:
        """Write every row (temporary file in the same folder, then rename: never half a manifest; the
        file gets the mode a normal write gives under the umask)."""
        big = len(self._rank)
        rows = sorted(self.rows.values(), key=lambda r: (self._rank.get(r["path"], big), r["path"]))

        def dump(tmp: Path) -> None:
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=COLUMNS)
                w.writeheader()
                w.writerows(rows)

        return atomic_write(self.path, dump)


def read_manifest(path: str | Path) -> list[dict]:
    """The rows of a manifest file, as dicts of strings."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, (list, tuple)):
        return ";".join(str(x) for x in v)
    return " ".join(str(v).split())  # one line
