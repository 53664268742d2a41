"""Run a job generator in a napari ``thread_worker`` (or synchronously, for deterministic tests).

Set ``NAPARI_S2S_SYNC=1`` to run jobs in the calling (GUI) thread: everything else stays the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable

SYNC_ENV = "NAPARI_S2S_SYNC"


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

    worker = thread_worker(run, start_thread=False, ignore_errors=True)()
    worker.yielded.connect(on_yield)
    worker.errored.connect(on_error)
    worker.finished.connect(on_finished)
    worker.start()
    return worker
