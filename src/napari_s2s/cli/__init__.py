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
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            try:
                args = build_parser().parse_args(argv)
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


def add_slide_argument(p: argparse.ArgumentParser, *, sample: bool = True, nargs=None) -> None:
    """The PATH argument shared by sub-commands (``--sample`` for the built-in synthetic slide)."""
    p.add_argument("path", nargs=nargs or "?", help="Space Ranger outs/ folder or .h5ad file")
    if sample:
        p.add_argument("--sample", action="store_true", help="use the built-in synthetic slide")
    p.add_argument("--pitch-um", type=float, default=None, help="spot pitch in micrometres (override)")


def load_slide_from_args(args):
    """Read the slide named by ``args.path`` / ``args.sample`` (``--pitch-um`` checked first)."""
    return open_slide(getattr(args, "path", None), sample=getattr(args, "sample", False),
                      pitch_um=getattr(args, "pitch_um", None))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
