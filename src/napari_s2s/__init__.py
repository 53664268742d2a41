"""napari-s2s: S2S-ST imputation of spatial transcriptomics slides, as a napari plugin.

The :mod:`napari_s2s.core` package holds everything that does not need a display: ``core.data``
(slide model, readers, lattice geometry, H&E features), ``core.s2s`` (model, training, imputation),
``core.methods`` (method interface, baselines) and ``core.evaluation`` (metrics, benchmark); the GUI
modules are thin adapters over it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
