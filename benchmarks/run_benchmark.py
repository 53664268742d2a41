"""Run the hold-out benchmark on every shared slide and write ``benchmarks/results/``.

Usage (from the repository root)::

    nice -n 5 python benchmarks/run_benchmark.py [--methods a,b,...] [--budget S] [--seed N]
                                                 [--name baselines]

Slides are read from ``$NAPARI_S2S_DATA`` or ``../shared/data`` (every entry; non-slides such as
the README are skipped with a warning). It is exactly ``napari-s2s benchmark DATA/* --json
results/NAME.json --plot results/NAME.png`` with the Markdown table saved to ``results/NAME.md``,
so every committed number can be reproduced with that command.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: The methods of the committed baseline table.
BASELINES = "nearest,linear,cubic,gaussian,pca_gaussian,dist"


def data_dir() -> Path:
    env = os.environ.get("NAPARI_S2S_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def shared_slides(keys: list[str] | None = None):
    """Read the shared slides (``.h5ad`` files and Space Ranger folders of :func:`data_dir`, by name),
    or those whose name contains one of ``keys``; yields each :class:`~napari_s2s.core.data.slide.Slide`
    (the readers' warnings about real quirks silenced)."""
    import warnings

    from napari_s2s.core.data.io import read_slide

    paths = sorted(p for p in data_dir().iterdir() if p.suffix == ".h5ad" or (p / "spatial").is_dir())
    for path in paths:
        if keys and not any(k in path.name for k in keys):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield read_slide(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=BASELINES, help=f"methods (default {BASELINES}; 'all' for every one)")
    ap.add_argument("--budget", default=None, help="training budget in seconds for learned methods")
    ap.add_argument("--seed", default="0")
    ap.add_argument("--genes", default="top:30")
    ap.add_argument("--name", default="baselines", help="stem of the result files (default baselines)")
    ap.add_argument("--out", default=str(HERE / "results"), help="result folder")
    args = ap.parse_args(argv)

    from napari_s2s.cli import main as cli_main

    data = data_dir()
    if not data.is_dir():
        print(f"no data folder at {data} (set NAPARI_S2S_DATA)", file=sys.stderr)
        return 2
    paths = [str(p) for p in sorted(data.iterdir())]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        "benchmark",
        *paths,
        "--json",
        str(out / f"{args.name}.json"),
        "--plot",
        str(out / f"{args.name}.png"),
        "--genes",
        args.genes,
        "--seed",
        args.seed,
    ]
    if args.methods != "all":
        cmd += ["--methods", args.methods]
    if args.budget is not None:
        cmd += ["--budget", args.budget]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli_main(cmd)
    table = buf.getvalue()
    print(table, end="")
    shown = ["napari-s2s", "benchmark", "DATA/*", *cmd[len(paths) + 1 :]]
    shown = [s.replace(str(ROOT) + os.sep, "") for s in shown]
    header = (
        f"# Hold-out benchmark: {args.name}\n\n"
        f"Produced by `python benchmarks/run_benchmark.py` (DATA = `../shared/data`), i.e.\n"
        f"`{' '.join(shown)}`.\n"
        "Per slide, median over genes on the hidden spots (3/4 of the usable spots); "
        "seconds are wall-clock per method on the benchmark machine.\n\n"
    )
    (out / f"{args.name}.md").write_text(header + table)
    return rc


if __name__ == "__main__":
    sys.exit(main())
