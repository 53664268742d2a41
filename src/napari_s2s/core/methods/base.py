"""The one small interface every imputation method implements (baselines, S2S, histology-guided).

A method receives an :class:`ImputationTask`: the measured spots' values and coordinates, the
coordinates of the positions to predict, and (for methods that use it) the H&E image. It never sees
the values it must predict: the task is built so that hidden values are simply not in it.

Methods register themselves by name with :func:`register`; the benchmark and the CLI look them up in
:data:`METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from ..data.histology_features import HistologyView, histology_view  # noqa: F401  (re-exported)
from ..data.lattice import physical


@dataclass(frozen=True)
class ImputationTask:
    """Everything a method may use to predict values at target positions.

    Attributes
    ----------
    kind
        Lattice kind, ``"hex"`` or ``"square"``.
    measured_rows, measured_cols
        (m,) array coordinates of the measured spots.
    measured_values
        (m, G) log-normalised values of the measured spots for the target genes.
    genes
        The G target gene names.
    target_rows, target_cols
        (t,) array coordinates where predictions are wanted (hidden spots, or a dense grid).
    measured_all_genes
        (m, n_genes') log-normalised values of the measured spots over every gene detected in >= 10 %
        of them (CSR), for cross-gene methods such as ``pca_gaussian``; may be ``None``.
    histology
        :class:`HistologyView` when the slide has an image and pixel positions, else ``None``.
    seed
        Seed for anything random.
    budget_s
        Training time budget in seconds for learned methods (``None``: the method's default).
    """

    kind: str
    measured_rows: np.ndarray
    measured_cols: np.ndarray
    measured_values: np.ndarray
    genes: tuple[str, ...]
    target_rows: np.ndarray
    target_cols: np.ndarray
    measured_all_genes: sp.csr_matrix | None = None
    histology: HistologyView | None = None
    seed: int = 0
    budget_s: float | None = None
    extra: dict = field(default_factory=dict)

    def measured_physical(self) -> np.ndarray:
        """(m, 2) physical ``(y, x)`` of measured spots in pitch units (hex: ``row*sqrt(3)/2, col/2``)."""
        return physical(self.measured_rows, self.measured_cols, self.kind)

    def target_physical(self) -> np.ndarray:
        """(t, 2) physical ``(y, x)`` of target positions in pitch units."""
        return physical(self.target_rows, self.target_cols, self.kind)


class Method(Protocol):
    """An imputation method: ``predict(task) -> (t, G)`` float array for the task's targets.

    Methods that train may also offer ``stop()``: safe to call from another thread while
    ``predict`` runs, which then ends within about one training step by raising
    :class:`MethodStopped` (the dock's Stop and closing napari during a validation use it).
    """

    name: str

    def predict(self, task: ImputationTask) -> np.ndarray: ...


class MethodStopped(Exception):
    """``predict`` ended early because the method's ``stop()`` was called: there is no prediction."""


#: Registered methods: name -> factory taking keyword options and returning a :class:`Method`.
METHODS: dict[str, Callable[..., Method]] = {}


def register(name: str) -> Callable:
    """Class/function decorator registering a method factory under ``name``."""

    def deco(factory):
        METHODS[name] = factory
        return factory

    return deco


def applies(name: str, task: ImputationTask) -> bool:
    """Whether method ``name`` can run on this task (histology methods need an image)."""
    factory = METHODS[name]
    needs = getattr(factory, "needs_histology", False)
    return task.histology is not None or not needs


#: Modules that register methods when imported (a module not written yet is skipped).
METHOD_MODULES = (
    "napari_s2s.core.methods.baselines",
    "napari_s2s.core.methods.dist",
    "napari_s2s.core.methods.s2s",
    "napari_s2s.core.methods.histology",
)


def load_all() -> dict[str, Callable[..., Method]]:
    """Import every method module so that :data:`METHODS` is complete; returns it."""
    import importlib

    for mod in METHOD_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
    return METHODS
