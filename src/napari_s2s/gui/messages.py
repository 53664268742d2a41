"""What the dock says to the user: notifications, one-line errors, durations.

Every part of the dock notifies through :func:`notify` (looked up as ``messages.notify`` at call time,
so tests can collect the notifications by patching it).
"""

from __future__ import annotations


def notify(kind: str, message: str) -> None:
    """A napari notification: ``kind`` is ``"info"``, ``"warning"`` or ``"error"``."""
    from napari.utils import notifications

    getattr(notifications, f"show_{kind}")(f"napari-s2s: {message}")


def one_line(exc: BaseException) -> str:
    """The first line of an error; bad input (``SlideError``) as it is, others with their type."""
    from ..core.errors import SlideError

    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    from .workers import RunFailed

    return first if isinstance(exc, (SlideError, RunFailed)) else f"{type(exc).__name__}: {first}"


def fmt_seconds(seconds: float) -> str:
    """``"12.3 s"``, ``"2 min 05 s"`` or ``"1 h 02 min"``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"
