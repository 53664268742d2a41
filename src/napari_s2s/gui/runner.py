"""The run in progress: its job and napari worker, started and stopped from the GUI thread.

Not a Qt object, so that it can still stop the run as the widget is destroyed (closing napari), and
at the latest as the interpreter exits: a thread still computing in torch while Python finalizes
aborts the process ("terminate called without an active exception").
"""

from __future__ import annotations

import atexit
import time
import weakref

from . import workers

#: Longest wait (s) for a run's threads to end when the widget goes away (closing napari): the
#: interpreter must not exit while torch computes in them.
SHUTDOWN_WAIT_S = 30.0


class JobRunner:
    """Holds the running job (``TrainingJob`` / ``ValidationJob``) and its worker."""

    def __init__(self):
        self.job = None
        self.worker = None
        self.connections: list = []  # (napari emitter, callback) to drop when the widget dies
        _RUNNERS.add(self)

    @property
    def running(self) -> bool:
        return self.job is not None

    def connect(self, emitter, callback) -> None:
        """``emitter.connect(callback)``, disconnected again by :meth:`shutdown`."""
        emitter.connect(callback)
        self.connections.append((emitter, callback))

    def launch(self, on_yield, on_error, on_finished) -> None:
        """Run ``self.job.run()`` in a worker (see :func:`.workers.start`; set :attr:`job` first)."""
        self.worker = workers.start(self.job.run, on_yield, on_error, on_finished)

    def finished(self):
        """The run ended: forget it; returns its job."""
        job, self.job, self.worker = self.job, None, None
        return job

    def shutdown(self, *_) -> None:
        """The widget goes away: disconnect from the viewer and stop the run."""
        for emitter, callback in self.connections:
            try:
                emitter.disconnect(callback)
            except (RuntimeError, ValueError, TypeError):
                pass
        self.connections.clear()
        job, worker = self.job, self.worker
        if job is not None:
            job.stop(abandon=True)  # no maps wanted
        if worker is not None:
            try:
                worker.quit()
            except RuntimeError:  # already deleted
                worker = None
        end = time.perf_counter() + SHUTDOWN_WAIT_S
        while worker is not None and worker.is_running and time.perf_counter() < end:
            time.sleep(0.02)  # the worker ends after its current training step
        if job is not None:
            job.wait(max(0.0, end - time.perf_counter()))


_RUNNERS: weakref.WeakSet[JobRunner] = weakref.WeakSet()


@atexit.register
def _shutdown_all() -> None:
    """At exit (before Python stops its threads), end every run still going."""
    for runner in list(_RUNNERS):
        runner.shutdown()
