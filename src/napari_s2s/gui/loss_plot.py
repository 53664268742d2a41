"""A small live loss plot (QPainter: cheap enough to redraw on every training step)."""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

#: Most points drawn (longer histories are subsampled).
MAX_POINTS = 400


class LossPlot(QWidget):
    """Plots ``[(step, loss), ...]`` on a log scale; call :meth:`set_points` then it repaints."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._points: list[tuple[int, float]] = []
        self.setMinimumHeight(70)
        self.setMinimumWidth(60)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip("training loss (log scale) per step")

    def set_points(self, points) -> None:
        pts = [(s, v) for s, v in points if v is not None and math.isfinite(v) and v > 0]
        if len(pts) > MAX_POINTS:
            stride = len(pts) / MAX_POINTS
            pts = [pts[int(i * stride)] for i in range(MAX_POINTS)] + [pts[-1]]
        self._points = pts
        self.update()

    def points(self) -> list[tuple[int, float]]:
        return list(self._points)

    def paintEvent(self, event):  # noqa: N802 (Qt name)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(self.rect()).adjusted(4, 4, -4, -14)
        p.fillRect(self.rect(), QColor(38, 41, 48))
        p.setPen(QPen(QColor(90, 94, 104), 1))
        p.drawRect(rect)
        p.setPen(QColor(170, 170, 170))
        if len(self._points) < 2:
            p.drawText(rect, Qt.AlignmentFlag.AlignCenter, "loss")
            p.end()
            return
        steps = [s for s, _ in self._points]
        logs = [math.log10(v) for _, v in self._points]
        s0, s1 = min(steps), max(steps)
        l0, l1 = min(logs), max(logs)
        if l1 - l0 < 1e-9:
            l0, l1 = l0 - 0.5, l1 + 0.5
        ds = max(1, s1 - s0)
        path = QPainterPath()
        for k, (s, lv) in enumerate(zip(steps, logs)):
            x = rect.left() + (s - s0) / ds * rect.width()
            y = rect.bottom() - (lv - l0) / (l1 - l0) * rect.height()
            if k == 0:
                path.moveTo(QPointF(x, y))
            else:
                path.lineTo(QPointF(x, y))
        p.setPen(QPen(QColor(120, 200, 255), 1.5))
        p.drawPath(path)
        p.setPen(QColor(170, 170, 170))
        last = self._points[-1][1]
        p.drawText(
            QRectF(rect.left(), rect.bottom() + 1, rect.width(), 13),
            Qt.AlignmentFlag.AlignRight,
            f"step {s1}  loss {last:.4g}",
        )
        p.end()
