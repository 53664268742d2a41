"""A progress bar that repaints lazily.

``QProgressBar.setValue`` repaints synchronously; in a napari window (an OpenGL canvas composited
with the widgets) each such repaint costs tens of milliseconds on software OpenGL, several times per
training step. This bar only calls ``update()``, so Qt coalesces repaints.
"""

from __future__ import annotations

from qtpy.QtCore import QRectF, Qt
from qtpy.QtGui import QColor, QPainter
from qtpy.QtWidgets import QSizePolicy, QWidget


class ProgressBar(QWidget):
    """Fraction in [0, 1] (``None``: unknown) with a text drawn over it."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._fraction: float | None = 0.0
        self._text = ""
        self.setMinimumHeight(18)
        self.setMinimumWidth(40)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def fraction(self) -> float | None:
        return self._fraction

    def text(self) -> str:
        return self._text

    def set_progress(self, fraction: float | None, text: str) -> None:
        frac = None if fraction is None else max(0.0, min(1.0, float(fraction)))
        if frac != self._fraction or text != self._text:
            self._fraction, self._text = frac, text
            self.update()

    def paintEvent(self, event):  # noqa: N802 (Qt name)
        p = QPainter(self)
        r = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        p.fillRect(r, QColor(38, 41, 48))
        if self._fraction:
            done = QRectF(r.left(), r.top(), r.width() * self._fraction, r.height())
            p.fillRect(done, QColor(80, 130, 200))
        p.setPen(QColor(90, 94, 104))
        p.drawRect(r)
        p.setPen(QColor(230, 230, 230))
        p.drawText(r, Qt.AlignmentFlag.AlignCenter, self._text)
        p.end()
