"""Display-free core of napari-s2s. Nothing in this package imports napari or Qt."""

from .data.io import read_slide
from .data.slide import GeneGrid, Slide
from .errors import SlideError

__all__ = ["GeneGrid", "Slide", "SlideError", "read_slide"]
