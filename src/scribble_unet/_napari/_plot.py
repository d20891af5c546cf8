"""A small live plot of training loss and validation IoU, drawn with QPainter (no matplotlib)."""

from __future__ import annotations

import math
from typing import Any

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

LOSS_COLOR = QColor(80, 170, 255)
IOU_COLOR = QColor(255, 170, 40)


class LivePlot(QWidget):
    """Loss (left axis, log scale) and IoU (right axis, 0..1) against the step."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss: list[tuple[int, float]] = []
        self.iou: list[tuple[int, float]] = []
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def clear(self) -> None:
        self.loss.clear()
        self.iou.clear()
        self.update()

    def add_loss(self, step: int, value: float) -> None:
        if math.isfinite(value) and value > 0:
            self.loss.append((step, value))
            if len(self.loss) > 4000:  # keep painting cheap on long runs
                self.loss = self.loss[::2]
            self.update()

    def add_iou(self, step: int, value: float) -> None:
        self.iou.append((step, value))
        self.update()

    def paintEvent(self, event: Any) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        area = QRectF(36, 8, max(1, w - 72), max(1, h - 28))
        p.fillRect(self.rect(), QColor(38, 41, 48))
        p.setPen(QPen(QColor(120, 120, 120), 1))
        p.drawRect(area)
        p.setPen(QColor(200, 200, 200))
        p.drawText(QRectF(0, h - 18, w, 16), Qt.AlignmentFlag.AlignCenter, "step")
        last = max([s for s, _ in self.loss] + [s for s, _ in self.iou] + [1])
        if self.loss:
            vals = [math.log10(v) for _, v in self.loss]
            lo, hi = min(vals), max(vals)
            if hi - lo < 1e-6:
                lo, hi = lo - 0.5, hi + 0.5
            pts = [QPointF(area.left() + area.width() * s / last,
                           area.bottom() - area.height() * (math.log10(v) - lo) / (hi - lo))
                   for s, v in self.loss]
            p.setPen(QPen(LOSS_COLOR, 1.5))
            p.drawPolyline(QPolygonF(pts))
            p.drawText(QRectF(0, area.top(), 34, 14), Qt.AlignmentFlag.AlignRight, f"{10 ** hi:.2g}")
            p.drawText(QRectF(0, area.bottom() - 14, 34, 14), Qt.AlignmentFlag.AlignRight, f"{10 ** lo:.2g}")
        if self.iou:
            pts = [QPointF(area.left() + area.width() * s / last, area.bottom() - area.height() * v)
                   for s, v in self.iou]
            p.setPen(QPen(IOU_COLOR, 2))
            p.drawPolyline(QPolygonF(pts))
            for pt in pts:
                p.drawEllipse(pt, 2.5, 2.5)
            p.drawText(QRectF(area.right() + 2, area.top(), 34, 14), Qt.AlignmentFlag.AlignLeft, "1.0")
            p.drawText(QRectF(area.right() + 2, area.bottom() - 14, 34, 14), Qt.AlignmentFlag.AlignLeft, "0.0")
        p.setPen(LOSS_COLOR)
        p.drawText(QRectF(area.left() + 4, area.top() + 2, 120, 14), Qt.AlignmentFlag.AlignLeft, "loss")
        p.setPen(IOU_COLOR)
        # Held-out strokes lie inside objects and away from them, never on edges: the figure is
        # named for what it measures, not "validation IoU" (it over-estimates the mask's IoU).
        p.drawText(QRectF(area.right() - 204, area.top() + 2, 200, 14), Qt.AlignmentFlag.AlignRight,
                   "IoU on held-out strokes" + (f" {self.iou[-1][1]:.2f}" if self.iou else ""))
        p.end()
