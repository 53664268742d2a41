"""``napari-s2s benchmark PATH... --json OUT.json [--plot OUT.png]``: the hold-out benchmark.

Runs the protocol of :mod:`napari_s2s.core.evaluation.benchmark` on every slide given, writes the JSON record,
prints a Markdown table to stdout, and optionally a figure. Paths that are not slides are skipped
with a warning; slides that fail are reported and skipped; exit code 2 only when no slide succeeded.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

from ..core.errors import SlideError


def add_parser(sub):
    p = sub.add_parser(
        "benchmark",
        help="hold-out benchmark: hide 3/4 of the spots, predict them, score every method",
        description="Hold-out benchmark: 1/4 of the spots (a sub-lattice) are measured, every method "
        "predicts the rest; per-gene PCC, RMSE, MAE and SSIM, medians and seconds per method.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="slides (Space Ranger or Visium HD outs/, .h5ad, Xenium "
                   "folders, SpatialData .zarr); others are skipped")
    p.add_argument("--json", dest="json_out", required=True, metavar="OUT.json", help="write the results here")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="also write a figure")
    p.add_argument("--genes", default="top:30", help="A,B,... or top:N (default top:30, per slide)")
    p.add_argument("--methods", default=None, help="a,b,... (default: every method that applies, ablations excepted)")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="training time budget for learned methods (default: each method's own)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    from . import add_reading_options

    add_reading_options(p)
    return p


def parse_genes(spec: str | None) -> tuple[list[str] | None, int]:
    """``"top:N"`` -> ``(None, N)``; ``"A,B"`` -> ``(["A", "B"], len)``.

    Raises
    ------
    SlideError
        A malformed specification.
    """
    spec = (spec or "top:30").strip()
    if spec.lower().startswith("top:"):
        try:
            n = int(spec[4:])
        except ValueError:
            raise SlideError(None, f"--genes {spec!r}: expected top:N with an integer N") from None
        if n < 1:
            raise SlideError(None, f"--genes {spec!r}: N must be at least 1")
        return None, n
    genes = [g.strip() for g in spec.split(",") if g.strip()]
    if not genes:
        raise SlideError(None, f"--genes {spec!r}: no gene names")
    return genes, len(genes)


def _write_json(path: Path, data: dict) -> None:
    """Write atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(args) -> int:
    from ..core.evaluation.benchmark import markdown_table, run_benchmark

    from . import reading_options

    genes, n_genes = parse_genes(args.genes)
    read_options = reading_options(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    out = Path(args.json_out)
    inputs = {str(Path(p).resolve()) for p in args.paths}
    if str(out.resolve()) in inputs:
        raise SlideError(out, "--json would overwrite an input")

    def progress(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    # warnings (skipped paths, failed slides or methods) go to stderr as one line each, as they come
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = run_benchmark(args.paths, methods=methods, genes=genes, budget_s=args.budget,
                                   seed=args.seed, progress=progress, n_genes=n_genes, read_options=read_options)
        except ValueError as exc:  # unknown method names
            raise SlideError(None, str(exc)) from None
    for w in caught:
        print(f"napari-s2s: warning: {w.message}", file=sys.stderr)
    print(markdown_table(result), end="")
    if not result["slides"]:
        why = "; ".join(f"{k['path']}: {k['reason']}" for k in result["skipped"])
        print(f"napari-s2s: error: no slide could be benchmarked ({why or 'no PATH'})", file=sys.stderr)
        return 2
    _write_json(out, result)
    if args.plot:
        from ..core.evaluation.plot import plot_benchmark

        plot_benchmark(result, args.plot)
    return 0
