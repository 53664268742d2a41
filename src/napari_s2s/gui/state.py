"""The evented training state that the progress bar and loss plot observe (psygnal, no Qt).

The core emits typed progress events; the worker yields them; :meth:`TrainingState.apply` folds
each into this state, whose field changes emit signals (``state.events.<field>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psygnal import evented

#: Phases in which a run is under way.
RUNNING = ("starting", "prepare", "train", "impute", "validate", "stopping")


@evented
@dataclass
class TrainingState:
    """Where the current training (or validation) run stands.

    Attributes
    ----------
    phase
        ``"idle"``, ``"starting"``, ``"prepare"``, ``"train"``, ``"impute"``, ``"validate"``,
        ``"stopping"`` (Stop was clicked: the final maps of a training come next), ``"done"``,
        ``"stopped"`` or ``"error"``.
    step, max_steps
        Optimisation steps done and planned (``max_steps`` 0 when unknown).
    loss
        Last training loss (``None`` before the first).
    elapsed_s, eta_s
        Seconds since the run started and estimated seconds left (``None`` when unknown).
    message
        Short human-readable status.
    losses
        Loss history ``(step, loss)`` (mutated in place; observe ``step`` to redraw).
    """

    phase: str = "idle"
    step: int = 0
    max_steps: int = 0
    loss: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None
    message: str = ""
    losses: list = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.phase in RUNNING

    def fraction(self) -> float | None:
        """Progress in [0, 1] from steps, else from elapsed time and ETA; ``None`` when unknown."""
        if self.max_steps and self.max_steps > 0:
            return min(1.0, self.step / self.max_steps)
        if self.eta_s is not None and self.elapsed_s + self.eta_s > 0:
            return min(1.0, self.elapsed_s / (self.elapsed_s + self.eta_s))
        return None

    def reset(self, phase: str = "starting", message: str = "") -> None:
        """Clear the run's progress (before a new run)."""
        self.losses.clear()
        with self.events.paused():
            self.step = 0
            self.max_steps = 0
            self.loss = None
            self.elapsed_s = 0.0
            self.eta_s = None
        self.message = message
        self.phase = phase
        self.events.step.emit(0)

    def tick(self, elapsed_s: float) -> None:
        """The clock moved on without an event (a long step: choosing the base predictor, the final
        maps): elapsed time advances to ``elapsed_s`` and the ETA counts down by as much (not below 0)."""
        if not self.running or elapsed_s <= self.elapsed_s:
            return
        with self.events.paused(lambda a, b: b):
            if self.eta_s is not None:
                self.eta_s = max(0.0, self.eta_s - (elapsed_s - self.elapsed_s))
            self.elapsed_s = float(elapsed_s)

    def apply(self, ev) -> None:
        """Fold one core ``ProgressEvent`` (phase, step, max_steps, loss, elapsed_s, eta_s, message)."""
        loss = getattr(ev, "loss", None)
        step = int(getattr(ev, "step", 0) or 0)
        if loss is not None and (not self.losses or step > self.losses[-1][0]):
            self.losses.append((step, float(loss)))
        with self.events.paused(lambda a, b: b):  # coalesce: one signal per field
            self.max_steps = int(getattr(ev, "max_steps", 0) or 0)
            self.loss = None if loss is None else float(loss)
            self.elapsed_s = float(getattr(ev, "elapsed_s", 0.0) or 0.0)
            eta = getattr(ev, "eta_s", None)
            self.eta_s = None if eta is None else float(eta)
            msg = getattr(ev, "message", "") or ""
            if msg:
                self.message = msg
            self.phase = str(getattr(ev, "phase", self.phase))
            self.step = step
