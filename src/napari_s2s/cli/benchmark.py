"""``napari-s2s benchmark PATH... --json OUT.json [--plot OUT.png]``: the hold-out benchmark.

Runs the protocol of :mod:`napari_s2s.core.evaluation.benchmark` on every slide given (one method after
the other, or as parallel (slide, method) tasks on a Dask cluster with ``--workers`` / ``--scheduler``),
writes the JSON record, prints a Markdown table to stdout, and optionally a figure. Paths that are not slides are skipped
with a warning; slides that fail are reported and skipped; exit code 2 only when no slide succeeded.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import SlideError
from .batch import add_cluster_options, check_cluster_options


def add_parser(sub):
    p = sub.add_parser(
        "benchmark",
        help="hold-out benchmark: hide 3/4 of the spots, predict them, score every method",
        description="Hold-out benchmark: 1/4 of the spots (a sub-lattice) are measured, every method "
        "predicts the rest; per-gene PCC, RMSE, MAE and SSIM, medians and seconds per method.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="slides (Space Ranger outs/ or .h5ad); others are skipped")
    p.add_argument("--json", dest="json_out", required=True, metavar="OUT.json", help="write the results here")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="also write a figure")
    p.add_argument("--genes", default="top:30", help="A,B,... or top:N (default top:30, per slide)")
    p.add_argument("--methods", default=None, help="a,b,... (default: every method that applies, ablations excepted)")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="training time budget for learned methods (default: each method's own)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--seeds", default=None, metavar="A,B,...",
                   help="several seeds in one run (one task per slide x method x seed with --workers/--scheduler): "
                   "one JSON per seed, OUT_seedN.json (and OUT_seedN.png)")
    add_cluster_options(p, local_default="default: none, one method after the other in this process")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
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


@contextmanager
def _client(args, say):
    """A Dask client when ``--workers`` or ``--scheduler`` is given, else ``None`` (the serial benchmark)."""
    if args.workers is None and args.scheduler is None:
        yield None
        return
    from ..core.batch.cluster import open_client

    with open_client(args.workers, args.scheduler, args.connect_timeout, say=lambda m: say(f"napari-s2s: {m}")) as c:
        yield c


def run(args) -> int:
    from ..core.evaluation.benchmark import markdown_table, run_benchmarks

    check_cluster_options(args)
    seeds = parse_seeds(args.seeds) if args.seeds else [args.seed]
    genes, n_genes = parse_genes(args.genes)
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
            with _client(args, progress) as client:
                results = run_benchmarks(args.paths, seeds, methods=methods, genes=genes, budget_s=args.budget,
                                         progress=progress, n_genes=n_genes, client=client, retries=args.retries)
        except ValueError as exc:  # unknown method names
            raise SlideError(None, str(exc)) from None
    for w in caught:
        print(f"napari-s2s: warning: {w.message}", file=sys.stderr)
    several = len(seeds) > 1
    for sd, result in zip(seeds, results):
        print((f"## seed {sd}\n\n" if several else "") + markdown_table(result), end="\n" if several else "")
    if not results[0]["slides"]:
        why = "; ".join(f"{k['path']}: {k['reason']}" for k in results[0]["skipped"])
        print(f"napari-s2s: error: no slide could be benchmarked ({why or 'no PATH'})", file=sys.stderr)
        return 2
    for sd, result in zip(seeds, results):
        _write_json(_per_seed(out, sd) if several else out, result)
        if args.plot:
            from ..core.evaluation.plot import plot_benchmark

            plot_benchmark(result, _per_seed(Path(args.plot), sd) if several else args.plot)
    return 0


def parse_seeds(spec: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (each once, in order)."""
    try:
        seeds = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise SlideError(None, f"--seeds {spec!r}: expected integers separated by commas") from None
    if not seeds:
        raise SlideError(None, f"--seeds {spec!r}: no seed")
    return list(dict.fromkeys(seeds))


def _per_seed(path: Path, seed: int) -> Path:
    """``out.json`` -> ``out_seed3.json``."""
    return path.with_name(f"{path.stem}_seed{seed}{path.suffix}")
