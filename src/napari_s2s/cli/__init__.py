"""The ``napari-s2s`` command line.

Each sub-command lives in its own module (``info.py``, ``impute.py``, ``batch.py``, ``benchmark.py``,
``view.py``, ``session.py``, ``report.py``) exposing ``add_parser(subparsers)`` and ``run(args) -> int``.

The contract every command keeps (docs/design.md, "CLI contract"): exit code 0 on success; on bad input
(:class:`SlideError`, a malformed option) exactly one line on stderr naming the file and the problem,
exit code 2, no traceback. To keep it one line, warnings and progress lines go through :func:`say`,
which holds them back until the command :func:`commit`\\ s to its work (``impute``: training started;
``batch``: its tasks start; ``benchmark``: a slide is being scored): bad input found before that prints
its error line alone. An unexpected failure prints one "internal error" line and exits 1
(``NAPARI_S2S_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from .. import __version__
from ..core.errors import SlideError
from ..core.jobs import open_slide, split_gene_list  # noqa: F401  (split_gene_list: re-exported)

#: Sub-command modules, in the order they appear in ``--help``.
COMMANDS = ("info", "impute", "batch", "benchmark", "view", "session", "report")


class UsageError(Exception):
    """A malformed command line (argparse's complaint), reported as one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): the CLI's one-line contract holds for options too."""

    def error(self, message):  # noqa: D401 (argparse API)
        raise UsageError(f"{self.prog}: error: {' '.join(str(message).split())} (see {self.prog} --help)")


class _Stderr:
    """Lines for stderr, held back until :meth:`commit` (then printed as they come)."""

    def __init__(self) -> None:
        self.pending: list[str] = []
        self.live = False

    def say(self, line: str) -> None:
        if self.live:
            _print_err(line)
        else:
            self.pending.append(line)

    def commit(self) -> None:
        self.live = True
        lines, self.pending = self.pending, []
        for line in lines:
            _print_err(line)

    def discard(self) -> None:
        self.pending = []


_stderr = _Stderr()
_stderr.live = True  # outside main() (library use of the commands' run functions) lines print at once


def say(line: str) -> None:
    """A progress or warning line for stderr (held back until :func:`commit` while a command runs)."""
    _stderr.say(line)


def commit() -> None:
    """The command has started its real work: print what :func:`say` held back, and print at once from now."""
    _stderr.commit()


def _print_err(line: str) -> None:
    # one line whatever the message holds (a file name may contain a newline)
    print(line.replace("\r", "\\r").replace("\n", "\\n"), file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    _safe_streams()
    _stderr.pending, _stderr.live = [], False
    try:
        with warnings.catch_warnings():
            user_facing_warnings()
            warnings.showwarning = _show_warning
            try:
                args, extra = build_parser().parse_known_args(argv)
                if extra:  # named after the command they were given to, whose --help lists its options
                    prog = " ".join(
                        ["napari-s2s", args.command] + ([args.action] if getattr(args, "action", None) else [])
                    )
                    raise UsageError(f"{prog}: error: unrecognized arguments: {' '.join(extra)} (see {prog} --help)")
                if getattr(args, "sample", False) and getattr(args, "path", None):
                    prog = f"napari-s2s {args.command}"
                    raise UsageError(f"{prog}: error: give a PATH or --sample, not both (see {prog} --help)")
                rc = int(args._run(args) or 0)
                _flush_stdout()
            except UsageError as exc:
                return _fail(str(exc))
            except SlideError as exc:
                return _fail(f"napari-s2s: error: {exc}")
            except BrokenPipeError:
                return _broken_pipe()
            except KeyboardInterrupt:
                return _fail("napari-s2s: interrupted", 130)
            except MemoryError:
                return _fail("napari-s2s: error: out of memory", 1)
            except Exception as exc:
                if os.environ.get("NAPARI_S2S_DEBUG"):
                    raise
                what = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
                return _fail(f"napari-s2s: internal error: {what} (NAPARI_S2S_DEBUG=1 shows the traceback)", 1)
            commit()
            return rc
    finally:
        _stderr.live = True


def _fail(line: str, code: int = 2) -> int:
    """Drop held-back lines, print the one error line."""
    _stderr.discard()
    _stderr.live = True
    _print_err(line)
    return code


def _flush_stdout() -> None:
    if sys.stdout is not None:
        sys.stdout.flush()


def _broken_pipe() -> int:
    """The reader of stdout went away (``napari-s2s info --json | head``): not an error of ours."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail again
    except (OSError, AttributeError, ValueError):
        pass
    _stderr.discard()
    return 0


def _safe_streams() -> None:
    """Print file names that are not valid in the terminal's encoding (e.g. non-UTF-8 bytes) escaped."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):
            pass


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    say(f"napari-s2s: warning: {message}")


#: Warning categories that speak to developers of the code that raised them (deprecations): shown
#: only when napari-s2s raised them, never when they come from napari, pydantic, anndata, ...
DEVELOPER_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def user_facing_warnings(action: str = "default") -> None:
    """Warning filters of the command line: every warning (``action``: once per place, or "always"),
    except third-party deprecation noise (napari's internals print pydantic deprecations on ``view``).

    Call inside ``warnings.catch_warnings()``.
    """
    warnings.simplefilter(action)
    for category in DEVELOPER_WARNINGS:
        warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings(action, category=category, module=r"napari_s2s(\.|$)")


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
    """Read the slide named by ``args.path`` / ``args.sample`` (``--pitch-um`` and ``--bin-um`` checked first)."""
    opts = reading_options(args, getattr(args, "path", None))
    return open_slide(getattr(args, "path", None), sample=getattr(args, "sample", False), **opts)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
