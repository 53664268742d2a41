"""Display-free core of napari-s2s. Nothing in this package imports napari or Qt."""

from .errors import SlideError
from .io import read_slide
from .slide import GeneGrid, Slide

__all__ = ["GeneGrid", "Slide", "SlideError", "read_slide"]
