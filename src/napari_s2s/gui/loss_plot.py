"""A small live loss plot (QPainter: cheap enough to redraw on every training step).

Each step's loss is one batch's (windows of the slide and natural images), so the raw trace is mostly
noise; the plot draws it faintly and, over it, a running mean (exponential, in log space, bias-
corrected at the start, spanning a fifteenth of the points shown) that shows whether the loss still
falls. The vertical range follows the running mean and the bulk of the raw points (2nd-98th
percentile), so that one spike does not flatten the curve.
"""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

#: Most points drawn (longer histories are subsampled).
MAX_POINTS = 400
#: Span of the running mean: this fraction of the points shown (at least :data:`MIN_SPAN`).
SPAN_FRACTION = 1.0 / 15.0
MIN_SPAN = 5.0


def running_mean(values: list[float], span: float) -> list[float]:
    """Exponential running mean of ``values`` with weight ``1 - 1/span`` on the past, bias-corrected
    so that the first points are their own mean rather than pulled towards zero."""
    a = 1.0 - 1.0 / max(float(span), 1.0)
    out, m, w = [], 0.0, 0.0
    for v in values:
        m = a * m + (1.0 - a) * v
        w = a * w + (1.0 - a)
        out.append(m / w)
    return out


def _quantile(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q * (len(v) - 1)))))]


class LossPlot(QWidget):
    """Plots ``[(step, loss), ...]`` on a log scale; call :meth:`set_points` then it repaints."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._points: list[tuple[int, float]] = []
        self.setMinimumHeight(70)
        self.setMinimumWidth(60)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip("training loss per step (log scale): faint, each step's; bright, its running mean")

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
        caption_h = self.fontMetrics().height() + 2  # room for the caption's descenders at any font size
        rect = QRectF(self.rect()).adjusted(4, 4, -4, -caption_h)
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
        smooth = running_mean(logs, max(MIN_SPAN, len(logs) * SPAN_FRACTION))
        s0, s1 = min(steps), max(steps)
        l0 = min(min(smooth), _quantile(logs, 0.02))
        l1 = max(max(smooth), _quantile(logs, 0.98))
        if l1 - l0 < 1e-9:
            l0, l1 = l0 - 0.5, l1 + 0.5
        ds = max(1, s1 - s0)

        def trace(values) -> QPainterPath:
            path = QPainterPath()
            for k, (s, lv) in enumerate(zip(steps, values)):
                x = rect.left() + (s - s0) / ds * rect.width()
                y = rect.bottom() - (min(max(lv, l0), l1) - l0) / (l1 - l0) * rect.height()
                if k == 0:
                    path.moveTo(QPointF(x, y))
                else:
                    path.lineTo(QPointF(x, y))
            return path

        p.setPen(QPen(QColor(120, 200, 255, 70), 1.0))  # each step's loss, faint
        p.drawPath(trace(logs))
        p.setPen(QPen(QColor(120, 200, 255), 2.0))  # its running mean
        p.drawPath(trace(smooth))
        p.setPen(QColor(170, 170, 170))
        p.drawText(
            QRectF(rect.left(), rect.bottom() + 1, rect.width(), caption_h),
            Qt.AlignmentFlag.AlignRight,
            f"step {s1}  loss {10.0 ** smooth[-1]:.4g} (running mean)",
        )
        p.end()
