"""Run a job generator in a napari ``thread_worker`` (or synchronously, for deterministic tests).

Set ``NAPARI_S2S_SYNC=1`` to run jobs in the calling (GUI) thread: everything else stays the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable

SYNC_ENV = "NAPARI_S2S_SYNC"


class RunFailed(Exception):
    """A ``RuntimeError`` of a run, carried out of the worker under another type (see :func:`start`)."""

    def __init__(self, exc: RuntimeError):
        super().__init__(str(exc))
        self.original = exc

    def __str__(self) -> str:  # the one line users see names the original error
        return f"{type(self.original).__name__}: {self.original}"


def sync_mode() -> bool:
    """Whether jobs run synchronously (``NAPARI_S2S_SYNC`` set to anything but ``""``/``"0"``)."""
    return os.environ.get(SYNC_ENV, "") not in ("", "0")


def start(
    run: Callable,
    on_yield: Callable,
    on_error: Callable[[BaseException], None],
    on_finished: Callable[[], None],
):
    """Start ``run()`` (a generator function); returns the napari worker, or ``None`` in sync mode.

    ``on_yield`` gets every yielded item, ``on_error`` the exception that ended the run (no
    napari traceback dialog: the caller shows one line), ``on_finished`` is always called last.
    """
    if sync_mode():
        try:
            for item in run():
                on_yield(item)
        except Exception as exc:  # noqa: BLE001 - reported like a worker error
            on_error(exc)
        finally:
            on_finished()
        return None

    from napari.qt.threading import thread_worker

    def guarded():
        # superqt's worker takes a RuntimeError for its own deletion and drops it without emitting
        # ``errored`` or ``finished``: the dock would wait for the run forever (torch raises RuntimeError)
        try:
            yield from run()
        except RuntimeError as exc:
            raise RunFailed(exc) from exc

    worker = thread_worker(guarded, start_thread=False, ignore_errors=True)()
    worker.yielded.connect(on_yield)
    worker.errored.connect(on_error)
    worker.finished.connect(on_finished)
    worker.start()
    return worker
