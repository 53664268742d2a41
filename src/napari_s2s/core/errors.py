"""Errors raised on bad input.

Every problem with a user's input is a :class:`SlideError` whose message is one line that names
the file and the problem; the CLI prints it and exits with code 2, the napari reader shows it as
a notification.
"""

from __future__ import annotations

from pathlib import Path


class SlideError(ValueError):
    """Bad input: the message is one line naming the file and the problem."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class SessionError(SlideError):
    """A review session or reader-answers file that is not one, does not match, or points at files
    that moved: one line naming the file and the problem (exit code 2 on the CLI)."""
