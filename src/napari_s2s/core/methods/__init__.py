"""Imputation methods behind one interface: :mod:`.base` defines the task a method sees
(:class:`ImputationTask`, :class:`HistologyView`), the :class:`Method` protocol and the ``METHODS``
registry; every other module registers methods with ``@register(name)`` (classical baselines, DIST,
the S2S engine wrapped as a method, histology-guided regression). A new method is a new module here,
listed in :data:`~napari_s2s.core.methods.base.METHOD_MODULES`. Importing this package does not
import the method modules (some need torch); :func:`load_all` does.
"""

from .base import (
    METHOD_MODULES,
    METHODS,
    HistologyView,
    ImputationTask,
    Method,
    MethodStopped,
    applies,
    histology_view,
    load_all,
    register,
)

__all__ = [
    "METHOD_MODULES",
    "METHODS",
    "HistologyView",
    "ImputationTask",
    "Method",
    "MethodStopped",
    "applies",
    "histology_view",
    "load_all",
    "register",
]
