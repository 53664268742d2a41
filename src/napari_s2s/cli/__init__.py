"""The ``napari-s2s`` command line.

Each sub-command lives in its own module (``info.py``, ``impute.py``, ``batch.py``, ``benchmark.py``,
``view.py``, ``session.py``, ``report.py``)
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
COMMANDS = ("info", "impute", "batch", "benchmark", "view", "session", "report")


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
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.formatwarning = _one_line_warning
            return int(args._run(args) or 0)
    except SlideError as exc:
        print(f"napari-s2s: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("napari-s2s: interrupted", file=sys.stderr)
        return 130


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"napari-s2s: warning: {message}\n"


def add_slide_argument(p: argparse.ArgumentParser, *, sample: bool = True, nargs=None) -> None:
    """The PATH argument shared by sub-commands (``--sample`` for the built-in synthetic slide)."""
    p.add_argument("path", nargs=nargs or "?", help="Space Ranger outs/ folder or .h5ad file")
    if sample:
        p.add_argument("--sample", action="store_true", help="use the built-in synthetic slide")
    p.add_argument("--pitch-um", type=float, default=None, help="spot pitch in micrometres (override)")


def load_slide_from_args(args):
    """Read the slide named by ``args.path`` / ``args.sample``."""
    from ..core.data.io import read_slide

    if getattr(args, "sample", False):
        from ..core.data.synthetic import make_synthetic_slide

        return make_synthetic_slide()
    if not args.path:
        raise SlideError(None, "give a slide PATH (Space Ranger outs/ folder or .h5ad) or --sample")
    return read_slide(args.path, pitch_um=args.pitch_um)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
