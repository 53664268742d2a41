"""napari-s2s: S2S-ST imputation of spatial transcriptomics slides, as a napari plugin.

The :mod:`napari_s2s.core` package holds everything that does not need a display
(slide model, readers, model, training, imputation, metrics); the GUI modules are thin
adapters over it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
