"""Slides and what is read from them: the :class:`Slide` model and its gene grids, the readers of
Space Ranger ``outs/`` folders and ``.h5ad`` files, the lattice geometry (array coordinates, pitch,
affine to image pixels), the synthetic test slide, and the per-position H&E features computed from a
slide's image. A change to how a slide is read, normalised, gridded or placed on its image belongs
here. Nothing in this package imports torch.
"""

from .io import read_slide
from .slide import GeneGrid, Slide

__all__ = ["GeneGrid", "Slide", "read_slide"]
