"""``napari-s2s benchmark PATH... --json OUT.json [--plot OUT.png]``: the hold-out benchmark.

Runs the protocol of :mod:`napari_s2s.core.evaluation.benchmark` on every slide given (one method after
the other, or as parallel (slide, method, seed) tasks on a Dask cluster with ``--workers`` / ``--scheduler``),
writes the JSON record, prints a Markdown table to stdout, and optionally a figure. Paths that are not slides are skipped
with a warning; slides that fail are reported and skipped; exit code 2 only when no slide succeeded (then
with one line listing why each was skipped). The outputs' folders must exist (as for ``impute --out``);
they are checked before any slide is read, and written all-or-nothing at the end.
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from pathlib import Path

from ..core.checks import check_distinct_outputs, check_output_path, positive_number, write_outputs
from ..core.errors import SlideError
from . import commit, say, split_gene_list
from .batch import add_cluster_options, check_cluster_options


def add_parser(sub):
    p = sub.add_parser(
        "benchmark",
        help="hold-out benchmark: hide 3/4 of the spots, predict them, score every method",
        description="Hold-out benchmark: 1/4 of the spots (a sub-lattice) are measured, every method "
        "predicts the rest; per-gene PCC, RMSE, MAE and SSIM, medians and seconds per method.",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="slides (Space Ranger or Visium HD outs/, .h5ad, Xenium folders, SpatialData .zarr); others are skipped",
    )
    p.add_argument(
        "--json",
        dest="json_out",
        required=True,
        metavar="OUT.json",
        help="write the results here (its folder must exist)",
    )
    p.add_argument("--plot", default=None, metavar="OUT.png", help="also write a figure (png, pdf, svg, ...)")
    p.add_argument("--genes", default="top:30", help="A,B,... or top:N (default top:30, per slide)")
    p.add_argument("--methods", default=None, help="a,b,... (default: every method that applies, ablations excepted)")
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="training time budget for learned methods (default: each method's own)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--seeds",
        default=None,
        metavar="A,B,...",
        help="several seeds in one run (one task per slide x method x seed with --workers/--scheduler): "
        "one JSON per seed, OUT_seedN.json (and OUT_seedN.png)",
    )
    add_cluster_options(p, local_default="default: none, one method after the other in this process")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    from . import add_reading_options

    add_reading_options(p)
    return p


def parse_genes(spec: str | None) -> tuple[list[str] | None, int]:
    """``"top:N"`` -> ``(None, N)``; ``"A,B"`` -> ``(["A", "B"], len)`` (repeats dropped, with a warning).

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
    if spec.isdigit():  # "--genes 8" meant as a number of genes ("8," names a gene called 8)
        raise SlideError(None, f"--genes {spec}: gene names or top:N; top:{spec} takes the {spec} most variable genes")
    genes = split_gene_list(spec)
    if not genes:
        raise SlideError(None, f"--genes {spec!r}: no gene names")
    return genes, len(genes)


def _dump_json(path: Path, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")


def check_outputs(json_out, plot, inputs, seeds: list[int] | None = None) -> list[tuple[Path, Path | None]]:
    """Before any work: ``--json`` (and ``--plot``) can be written (same rule as ``impute --out``: the
    folder must exist), are not inputs, differ, and the plot's format is known.

    With several ``seeds``, the files written are ``OUT_seedN.json`` (and ``OUT_seedN.png``), one pair per
    seed, in the order of ``seeds``; else ``[(OUT.json, OUT.png)]``.
    """
    several = seeds is not None and len(seeds) > 1
    pairs = []
    for sd in seeds if several else [None]:
        js = _per_seed(Path(json_out), sd) if several else json_out
        pl = (_per_seed(Path(plot), sd) if several else plot) if plot else None
        out = check_output_path(js, inputs=inputs, option="--json")
        png = None
        if pl:
            from ..core.evaluation.plot import plot_formats

            png = check_output_path(pl, inputs=inputs, option="--plot")
            fmt = png.suffix.lower().lstrip(".")
            if fmt not in plot_formats():
                raise SlideError(
                    png,
                    f"--plot: unknown image format {png.suffix or '(no suffix)'!r} "
                    f"(use {', '.join(sorted(plot_formats()))})",
                )
            check_distinct_outputs({"--json": js, "--plot": pl})
        pairs.append((out, png))
    return pairs


@contextmanager
def _client(args, note):
    """A Dask client when ``--workers`` or ``--scheduler`` is given, else ``None`` (the serial benchmark)."""
    if args.workers is None and args.scheduler is None:
        yield None
        return
    from ..core.batch.cluster import open_client

    with open_client(args.workers, args.scheduler, args.connect_timeout, say=note) as c:
        yield c


def run(args) -> int:
    from ..core.evaluation.benchmark import markdown_table, run_benchmarks
    from . import reading_options, user_facing_warnings

    genes, n_genes = parse_genes(args.genes)
    read_options = reading_options(args)
    methods = None
    if args.methods is not None:
        methods = list(dict.fromkeys(m.strip() for m in args.methods.split(",") if m.strip()))
        if not methods:
            raise SlideError(None, f"--methods {args.methods!r}: no method names")
    if args.budget is not None:
        positive_number(args.budget, None, "--budget")
    seeds = parse_seeds(args.seeds) if args.seeds else [args.seed]
    for sd in seeds:
        if not 0 <= sd < 2**32:
            what = "--seeds: each seed" if args.seeds else "--seed"
            raise SlideError(None, f"{what} must be an integer in [0, 2**32), not {sd}")
    check_cluster_options(args)
    outputs = check_outputs(args.json_out, args.plot, args.paths, seeds)

    def progress(msg: str) -> None:
        commit()  # a slide is being scored: held-back warnings (skipped paths) print now, the rest as they come
        if not args.quiet:
            say(msg)

    def note(msg: str) -> None:  # about the cluster: held back like warnings (a bad --scheduler stays one line)
        if not args.quiet:
            say(f"napari-s2s: {msg}")

    # warnings (skipped paths, failed slides or methods) go to stderr as one line each
    with warnings.catch_warnings():
        user_facing_warnings("always")
        try:
            with _client(args, note) as client:
                results = run_benchmarks(
                    args.paths,
                    seeds,
                    methods=methods,
                    genes=genes,
                    budget_s=args.budget,
                    progress=progress,
                    n_genes=n_genes,
                    client=client,
                    retries=args.retries,
                    read_options=read_options,
                )
        except ValueError as exc:  # unknown method names
            if isinstance(exc, SlideError):
                raise
            raise SlideError(None, str(exc)) from None
    if not results[0]["slides"]:
        why = "; ".join(
            k["reason"] if k["reason"].startswith(k["path"]) else f"{k['path']}: {k['reason']}"
            for k in results[0]["skipped"]
        )
        raise SlideError(None, f"no slide could be benchmarked ({why or 'no PATH'})")
    commit()
    writers = []
    for result, (out, png) in zip(results, outputs):
        writers.append((out, lambda tmp, r=result: _dump_json(tmp, r)))
        if png is not None:
            from ..core.evaluation.plot import plot_benchmark

            fmt = png.suffix.lower().lstrip(".")
            writers.append((png, lambda tmp, r=result, f=fmt: plot_benchmark(r, tmp, format=f)))
    write_outputs(writers)  # every seed's files or none; before the table: `benchmark ... | head` still gets them
    several = len(seeds) > 1
    for sd, result in zip(seeds, results):
        print((f"## seed {sd}\n\n" if several else "") + markdown_table(result), end="\n" if several else "")
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
