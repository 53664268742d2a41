"""Typed progress events of training and imputation (no torch import: the GUI reads them cheaply)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """A progress report from training or imputation.

    Attributes
    ----------
    phase
        ``"prepare"``, ``"train"``, ``"impute"``, ``"done"`` or ``"stopped"`` (the GUI adds
        ``"validate"`` for hold-out runs).
    step
        Optimiser steps done.
    max_steps
        Step limit, or ``None`` when only a time budget applies.
    loss
        Latest training loss (``None`` before the first step).
    elapsed_s
        Seconds since training started.
    eta_s
        Estimated seconds left, or ``None`` when unknown.
    message
        Human-readable status line.
    val_loss
        Latest validation loss on held-out measured spots (``None`` when not measured yet).
    """

    phase: str
    step: int = 0
    max_steps: int | None = None
    loss: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None
    message: str = ""
    val_loss: float | None = None
