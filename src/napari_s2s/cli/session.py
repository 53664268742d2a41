"""``napari-s2s session create|stats``: blinded review sessions from the command line.

- ``session create [SLIDE] (--compare A.h5ad,B.h5ad | --methods s2s,gaussian | --holdout s2s[,gaussian])
  --out S.json``: writes the session file readers open in the dock's "Blinded reading" view (maps
  of ``--methods`` / ``--holdout`` are computed now and stored in ``S_maps/`` beside it).
- ``session stats S.json [ANSWERS.json ...]``: unblinds and merges the readers' answers (default: every
  file of ``S_answers/``), prints the table the dock and the report show, ``--json`` writes it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..core.errors import SessionError
from . import SLIDE_HELP, add_reading_options


def add_parser(sub):
    p = sub.add_parser(
        "session",
        help="blinded review sessions: create one, or merge the readers' answers (stats)",
        description="Blinded review sessions: readers compare two maps per gene without knowing which is which.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    c = actions.add_parser(
        "create",
        help="make a session file to hand to readers",
        description="Make a session: two result files (--compare), two methods run now (--methods), or a "
        "hold-out validation run (--holdout: the method's prediction of hidden spots vs what was measured).",
    )
    c.add_argument(
        "slide",
        nargs="?",
        help=f"the slide ({SLIDE_HELP}); with --compare, defaults to the slide the first result was imputed "
        "from, read as it was then",
    )
    add_reading_options(c)
    what = c.add_mutually_exclusive_group(required=True)
    what.add_argument("--compare", metavar="A.h5ad,B.h5ad", help="two napari-s2s result files of the slide")
    what.add_argument(
        "--methods",
        metavar="A,B",
        help="two methods that impute the slide now, e.g. s2s,gaussian or s2s,s2s-he (with vs without H&E)",
    )
    what.add_argument(
        "--holdout",
        metavar="M[,N]",
        help="hold-out run: METHOD vs the measured values of the hidden spots, or two methods' predictions",
    )
    c.add_argument("-o", "--out", required=True, metavar="S.json", help="session file to write")
    c.add_argument(
        "--genes",
        default=None,
        help="A,B,... or top:N (default: the results' common genes with --compare, else top:30)",
    )
    c.add_argument("--names", default=None, metavar="A,B", help="labels of the two arms in stats and the report")
    c.add_argument("--title", default="", help="title shown to readers (keep the methods out of it)")
    c.add_argument("--question", default=None, help="the question readers answer")
    c.add_argument("--seed", type=int, default=0, help="seed of the methods and the readers' orders (default 0)")
    c.add_argument(
        "--budget", type=float, default=60.0, metavar="SECONDS", help="training budget of learned methods (default 60)"
    )
    c.add_argument("--force", action="store_true", help="replace an existing session file and its maps")
    c.add_argument("--quiet", action="store_true", help="no progress lines on stderr")

    s = actions.add_parser(
        "stats",
        help="unblind and merge readers' answers",
        description="Preference per gene and overall with 95 % intervals, can't-tell rates, "
        "mean scores and agreement between readers (Cohen's / Fleiss' kappa).",
    )
    s.add_argument("session", help="session file (.json)")
    s.add_argument(
        "answers",
        nargs="*",
        default=[],  # (a default keeps argparse from listing it among the required arguments)
        metavar="ANSWERS.json",
        help="readers' answer files (default: every file in the session's _answers folder)",
    )
    s.add_argument("--json", dest="json_out", default=None, metavar="OUT.json", help="also write the numbers as JSON")
    return p


def _pair(text: str, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise SessionError(None, f"{what} is empty")
    return items


def run(args) -> int:
    if args.action == "create":
        return _create(args)
    return _stats(args)


def _create(args) -> int:
    from ..core.review.create import create_session

    say = None if args.quiet else (lambda m: print(f"napari-s2s: {m}", file=sys.stderr))
    genes = args.genes
    if genes is not None and not genes.strip().lower().startswith("top:"):
        genes = _pair(genes, "--genes")
    session = create_session(
        args.out,
        args.slide,
        compare=_pair(args.compare, "--compare") if args.compare else None,
        methods=_pair(args.methods, "--methods") if args.methods else None,
        holdout=_pair(args.holdout, "--holdout") if args.holdout else None,
        genes=genes,
        seed=args.seed,
        budget_s=args.budget,
        names=_pair(args.names, "--names") if args.names else None,
        title=args.title,
        question=args.question,
        overwrite=args.force,
        progress=say,
        reading=_reading(args),
    )
    print(
        f'napari-s2s: wrote {session.path} ({session.describe()}); readers open it in the "Blinded reading" dock',
        file=sys.stderr,
    )
    return 0


def _reading(args) -> dict | None:
    """The reading options given on the command line (``None``: none, so a ``--compare`` session reads
    the slide as its first result's was read)."""
    from ..core.review.files import slide_reading
    from . import reading_options

    return slide_reading(reading_options(args, args.slide)) or None


def _stats(args) -> int:
    from ..core.review.answers import load_readers
    from ..core.review.files import write_json
    from ..core.review.session import ReviewSession
    from ..core.review.stats import format_summary, merge

    session = ReviewSession.load(args.session)
    readers = load_readers(session, args.answers or None)
    if not readers:
        raise SessionError(args.session, f"no answers yet (no file in {session.answers_dir})")
    summary = merge(session, readers)
    if args.json_out:
        out = Path(args.json_out)
        if any(Path(p).resolve() == out.resolve() for p in [args.session, *(args.answers or [])]):
            raise SessionError(out, "is an input; choose another --json file")
        if not out.parent.is_dir():
            raise SessionError(out, f"folder {out.parent} does not exist")
        write_json(out, summary)
    sys.stdout.write(format_summary(summary))
    sys.stdout.flush()
    return 0
