"""npe2 sample data: the built-in synthetic Visium-like slide (generated in code, offline)."""

from __future__ import annotations

from ..core.data.synthetic import make_synthetic_slide
from .layers import slide_layers


def make_sample_data():
    """H&E and measured gene stack of :func:`~napari_s2s.core.data.synthetic.make_synthetic_slide`."""
    slide = make_synthetic_slide()
    return slide_layers(slide, genes=["TumorMarker", "Gradient1", "Layered1", "Blobs1"])
