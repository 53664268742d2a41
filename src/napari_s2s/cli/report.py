"""``napari-s2s report SESSION --out report.html``: the blinded review, unblinded, as one HTML file.

Self-contained (images embedded): per gene the maps compared (H&E crop, measured, both arms, one
contrast) with the readers' answers, the summary table and agreement, and the hold-out metrics when
the session came from a validation run.
"""

from __future__ import annotations

import sys


def add_parser(sub):
    p = sub.add_parser(
        "report",
        help="HTML report of a blinded review session (maps, answers unblinded, summary table)",
        description="Write a self-contained HTML report of a review session for a lab meeting.",
    )
    p.add_argument("session", help="session file (.json)")
    p.add_argument(
        "answers",
        nargs="*",
        default=[],  # (a default keeps argparse from listing it among the required arguments)
        metavar="ANSWERS.json",
        help="readers' answer files (default: every file in the session's _answers folder)",
    )
    p.add_argument("-o", "--out", required=True, metavar="REPORT.html", help="report file to write")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def run(args) -> int:
    from ..core.review.answers import load_readers
    from ..core.review.report import write_report
    from ..core.review.session import ReviewSession

    session = ReviewSession.load(args.session)
    readers = load_readers(session, args.answers or None)
    say = None if args.quiet else (lambda m: print(f"napari-s2s: {m}", file=sys.stderr))
    out = write_report(session, readers, args.out, progress=say)
    n = sum(r.n_answered for r in readers)
    print(
        f"napari-s2s: wrote {out} ({len(session.genes)} genes, {len(readers)} reader(s), {n} answers)", file=sys.stderr
    )
    return 0
