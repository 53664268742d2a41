"""Test-only Dask worker preload: the worker process running a chosen task dies once, mid-task.

``NAPARI_S2S_TEST_DIE_ONCE="<text in the task key>|<marker file>"`` in the environment of the worker
processes. The first worker to start executing a task whose key contains the text writes the marker
and, a moment later (the task is running by then), ends its own process with ``os._exit`` as a crash
or the kernel's OOM killer would: no cleanup, no exception. The marker makes it happen once, so the
retry runs normally. Loaded with ``dask.config.set({"distributed.worker.preload": [this file]})``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from distributed import WorkerPlugin

DELAY_S = 1.0


class DieOnce(WorkerPlugin):
    def __init__(self, needle: str, marker: str):
        self.needle, self.marker = needle, marker

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing" or self.needle not in str(key):
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # once, across processes
        except FileExistsError:
            return
        os.write(fd, f"{os.getpid()} {key}\n".encode())
        os.close(fd)
        threading.Timer(DELAY_S, os._exit, args=(17,)).start()


async def dask_setup(worker):
    spec = os.environ.get("NAPARI_S2S_TEST_DIE_ONCE", "")
    if "|" in spec:
        needle, marker = spec.split("|", 1)
        await worker.plugin_add(DieOnce(needle, str(Path(marker))), name="napari-s2s-die-once")
