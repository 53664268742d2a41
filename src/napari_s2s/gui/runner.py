"""The run in progress: its job and napari worker, started and stopped from the GUI thread.

Not a Qt object, so that it can still stop the run as the widget is destroyed (closing napari).
"""

from __future__ import annotations

from . import workers


class JobRunner:
    """Holds the running job (``TrainingJob`` / ``ValidationJob``) and its worker."""

    def __init__(self):
        self.job = None
        self.worker = None
        self.connections: list = []  # (napari emitter, callback) to drop when the widget dies

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
        if self.job is not None:
            self.job.stop()
        if self.worker is not None:
            try:
                self.worker.quit()
            except RuntimeError:  # already deleted
                pass
