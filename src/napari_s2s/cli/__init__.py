"""The ``napari-s2s`` command line.

Each sub-command lives in its own module (``info.py``, ``benchmark.py``, ``impute.py``, ``view.py``)
exposing ``add_parser(subparsers)`` and ``run(args) -> int``. Bad input (:class:`SlideError`) is
printed as one line on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from .. import __version__
from ..core.errors import SlideError

#: Sub-command modules, in the order they appear in ``--help``.
COMMANDS = ("info", "impute", "benchmark", "view")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-s2s",
        description="S2S-ST imputation of spatial transcriptomics slides (napari plugin and CLI).",
    )
    parser.add_argument("--version", action="version", version=f"napari-s2s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # sub-command not built yet
            raise
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(), _one_line_warnings():
            user_facing_warnings()
            return int(args._run(args) or 0)
    except SlideError as exc:
        print(f"napari-s2s: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("napari-s2s: interrupted", file=sys.stderr)
        return 130


#: Warning categories that speak to developers of the code that raised them (deprecations): shown
#: only when napari-s2s raised them, never when they come from napari, pydantic, anndata, ...
DEVELOPER_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def user_facing_warnings() -> None:
    """Warning filters of the command line: every warning once per place, except third-party
    deprecation noise (napari's internals print pydantic deprecations on ``view``, for instance).

    Call inside ``warnings.catch_warnings()``.
    """
    warnings.simplefilter("default")
    for category in DEVELOPER_WARNINGS:
        warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("default", category=category, module=r"napari_s2s(\.|$)")


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"napari-s2s: warning: {message}\n"


class _one_line_warnings:
    """Print warnings as ``napari-s2s: warning: ...`` (one line) while the command runs."""

    def __enter__(self):
        self._saved = warnings.formatwarning
        warnings.formatwarning = _one_line_warning
        return self

    def __exit__(self, *exc):
        warnings.formatwarning = self._saved
        return False


#: What PATH may be, for help texts.
SLIDE_HELP = (
    "Space Ranger outs/ folder, .h5ad file, Xenium output folder, Visium HD outs/ (or a "
    "binned_outputs/square_XXXum/ folder), or SpatialData .zarr store"
)


def add_slide_argument(p: argparse.ArgumentParser, *, sample: bool = True, nargs=None) -> None:
    """The PATH argument shared by sub-commands (``--sample`` for the built-in synthetic slide)."""
    p.add_argument("path", nargs=nargs or "?", help=SLIDE_HELP)
    if sample:
        p.add_argument("--sample", action="store_true", help="use the built-in synthetic slide")
    add_reading_options(p)


def add_reading_options(p: argparse.ArgumentParser) -> None:
    """``--pitch-um``, ``--bin-um`` and ``--bin-from`` (how a slide is read)."""
    p.add_argument("--pitch-um", type=float, default=None, help="spot pitch in micrometres (override)")
    p.add_argument(
        "--bin-um",
        default=None,
        metavar="UM",
        help="bin size in micrometres: Xenium (and SpatialData cells) are counted in square bins of this "
        "size (default 50); for Visium HD outs/, the binned_outputs/square_XXXum folder to open (default 8)",
    )
    p.add_argument(
        "--bin-from",
        choices=("auto", "cells", "transcripts"),
        default="auto",
        help="Xenium / SpatialData: bin the cell-feature matrix at cell centroids, or every transcript at its "
        "position (default auto: cells when the matrix is there, else transcripts)",
    )


def reading_options(args, path=None) -> dict:
    """``read_slide`` keyword arguments from the parsed options (a bad ``--bin-um`` is a :class:`SlideError`)."""
    from ..core.data.binning import check_bin_um

    bin_um = getattr(args, "bin_um", None)
    return {
        "pitch_um": getattr(args, "pitch_um", None),
        "bin_um": None if bin_um is None else check_bin_um(bin_um, path),
        "counts_from": getattr(args, "bin_from", "auto") or "auto",
    }


def load_slide_from_args(args):
    """Read the slide named by ``args.path`` / ``args.sample``."""
    from ..core.data.io import read_slide

    if getattr(args, "sample", False):
        from ..core.data.synthetic import make_synthetic_slide

        return make_synthetic_slide()
    if not args.path:
        raise SlideError(None, f"give a slide PATH ({SLIDE_HELP}) or --sample")
    return read_slide(args.path, **reading_options(args, args.path))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
