"""The review table: per imputed gene, accept / flag with a comment, plus its validation metrics.

Plain Python (no Qt): the dock widget shows it in a table and exports it as CSV.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..core.checks import atomic_write

STATUSES = ("", "accepted", "flagged")
COLUMNS = ("gene", "status", "comment", "pcc", "rmse", "pcc_he", "rmse_he", "slide", "source", "reviewed_at")


@dataclass
class GeneReview:
    """One gene's review: status (``""``, ``"accepted"``, ``"flagged"``), comment and metrics.

    ``pcc_he`` / ``rmse_he`` are the metrics of the H&E-guided counterpart on the same hold-out
    task (``None`` when it did not run); :attr:`dpcc` / :attr:`drmse` are guided minus plain.
    """

    gene: str
    status: str = ""
    comment: str = ""
    pcc: float | None = None
    rmse: float | None = None
    pcc_he: float | None = None
    rmse_he: float | None = None
    reviewed_at: str = ""

    @property
    def dpcc(self) -> float | None:
        return None if self.pcc is None or self.pcc_he is None else self.pcc_he - self.pcc

    @property
    def drmse(self) -> float | None:
        return None if self.rmse is None or self.rmse_he is None else self.rmse_he - self.rmse


@dataclass
class ReviewTable:
    """Reviews of the genes of one slide, in the order the genes were added."""

    slide: str = ""
    source: str = ""
    rows: dict[str, GeneReview] = field(default_factory=dict)

    def names(self) -> set[str]:
        """Names a review CSV of this table may carry: the slide's, and the reviewed file's own (a
        review exported from a reopened result by an older version named the result file)."""
        out = {self.slide} if self.slide else set()
        if self.source:
            out.add(Path(self.source).stem)
            out.add(Path(self.source).name)
        return out

    def set_genes(self, genes) -> None:
        """Make sure every gene has a row (existing reviews are kept)."""
        for g in genes:
            self.rows.setdefault(g, GeneReview(g))

    def set_status(self, gene: str, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        row = self.rows.setdefault(gene, GeneReview(gene))
        row.status = status
        row.reviewed_at = _now()

    def set_comment(self, gene: str, comment: str) -> None:
        row = self.rows.setdefault(gene, GeneReview(gene))
        row.comment = comment.replace("\r", " ").replace("\n", " ").strip()
        row.reviewed_at = _now()

    def set_metrics(self, metrics: dict[str, dict]) -> None:
        """Attach validation metrics ``{gene: {"pcc": .., "rmse": ..}}``, optionally with the
        H&E-guided ``"pcc_he"`` / ``"rmse_he"`` (missing ones are cleared)."""
        for gene, m in metrics.items():
            row = self.rows.setdefault(gene, GeneReview(gene))
            row.pcc = m.get("pcc")
            row.rmse = m.get("rmse")
            row.pcc_he = m.get("pcc_he")
            row.rmse_he = m.get("rmse_he")

    def merge(self, other: ReviewTable, genes: set[str] | None = None) -> int:
        """Take the reviews (status, comment, time) of ``other`` for its genes in ``genes`` (default:
        all); metrics stay this table's unless it has none. Returns how many genes were taken."""
        n = 0
        for gene, rev in other.rows.items():
            if genes is not None and gene not in genes:
                continue
            row = self.rows.setdefault(gene, GeneReview(gene))
            row.status, row.comment, row.reviewed_at = rev.status, rev.comment, rev.reviewed_at
            if row.pcc is None and row.rmse is None:
                row.pcc, row.rmse, row.pcc_he, row.rmse_he = rev.pcc, rev.rmse, rev.pcc_he, rev.rmse_he
            n += 1
        return n

    def records(self) -> list[dict]:
        """One dict per gene with the :data:`COLUMNS`."""
        out = []
        for r in self.rows.values():
            out.append(
                {
                    "gene": r.gene,
                    "status": r.status,
                    "comment": r.comment,
                    "pcc": "" if r.pcc is None else f"{r.pcc:.4f}",
                    "rmse": "" if r.rmse is None else f"{r.rmse:.4f}",
                    "pcc_he": "" if r.pcc_he is None else f"{r.pcc_he:.4f}",
                    "rmse_he": "" if r.rmse_he is None else f"{r.rmse_he:.4f}",
                    "slide": self.slide,
                    "source": self.source,
                    "reviewed_at": r.reviewed_at,
                }
            )
        return out

    def to_csv(self, path: str | Path) -> Path:
        """Write the table as CSV (atomically); returns the path written."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        records = self.records()

        def dump(tmp: Path) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
                writer.writeheader()
                writer.writerows(records)

        # a temporary file beside it, then a rename; the file gets the mode a normal write gives (umask)
        return atomic_write(path, dump, as_slide_error=False)

    @classmethod
    def from_csv(cls, path: str | Path) -> ReviewTable:
        """Read a table written by :meth:`to_csv`."""
        table = cls()
        with open(path, newline="", encoding="utf-8") as fh:
            for rec in csv.DictReader(fh):
                table.slide = rec.get("slide", table.slide)
                table.source = rec.get("source", table.source)
                status = rec.get("status") or ""
                if status not in STATUSES:
                    raise ValueError(f"unknown status {status!r} for gene {rec['gene']!r}")
                table.rows[rec["gene"]] = GeneReview(
                    gene=rec["gene"],
                    status=status,
                    comment=rec.get("comment", ""),
                    pcc=float(rec["pcc"]) if rec.get("pcc") else None,
                    rmse=float(rec["rmse"]) if rec.get("rmse") else None,
                    pcc_he=float(rec["pcc_he"]) if rec.get("pcc_he") else None,
                    rmse_he=float(rec["rmse_he"]) if rec.get("rmse_he") else None,
                    reviewed_at=rec.get("reviewed_at", ""),
                )
        return table


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def review_of(slide) -> ReviewTable:
    """An empty review of ``slide``'s genes.

    It is named after the slide; a reopened result's review is named after the slide it was imputed
    from (so that the CSV exported while training loads without a warning and a re-export names the
    right slide), with the result file as its ``source``.
    """
    from ..core.data.slide import slide_name

    origin = getattr(slide, "imputed_from", None)
    name = slide_name(origin) if origin else slide.name
    return ReviewTable(slide=name, source=str(slide.source or ""))
