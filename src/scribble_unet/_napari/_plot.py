"""A small live plot of the training loss and the IoU on held-out strokes, drawn with QPainter.

The loss is drawn smoothed (an exponential moving average, :func:`~scribble_unet.state.history.smoothed`)
on a log axis with labelled ticks; the IoU on held-out strokes on a 0..1 axis on the right; the
steps along the bottom.
"""

from __future__ import annotations

import math
from typing import Any

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

from ..state.history import MAX_POINTS, smoothed

LOSS_COLOR = QColor(80, 170, 255)
IOU_COLOR = QColor(255, 170, 40)
TEXT_COLOR = QColor(200, 200, 200)
GRID_COLOR = QColor(70, 74, 82)
IOU_NAME = "IoU on held-out strokes"
"""Held-out strokes lie inside objects and away from them, never on edges: the figure is named
for what it measures, not "validation IoU" (it over-estimates the mask's IoU)."""


def nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """Round tick values between ``lo`` and ``hi`` (about ``n`` of them)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.2g}" if v < 0.01 or v >= 100 else f"{v:.2f}".rstrip("0").rstrip(".")


class LivePlot(QWidget):
    """Smoothed loss (left, log scale) and IoU on held-out strokes (right, 0..1) against the step."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss: list[tuple[int, float]] = []
        self.iou: list[tuple[int, float]] = []
        self.held_out = False  # whether the run holds strokes out (then the IoU axis shows before its first point)
        self.setMinimumHeight(170)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip("Blue: training loss, smoothed (lower is better; it should fall and flatten).\n"
                        f"Orange, when Advanced > validation share is above 0: {IOU_NAME} (0 to 1, higher is "
                        "better): how well the model predicts strokes it did not train on. Strokes avoid "
                        "object edges, so the whole mask scores lower.")

    def title(self) -> str:
        """The text at the top right: the last IoU on held-out strokes, or that none are held out."""
        if self.iou or self.held_out:
            return IOU_NAME + (f": {self.iou[-1][1]:.2f}" if self.iou else "")
        return "no strokes held out"

    def clear(self) -> None:
        self.loss.clear()
        self.iou.clear()
        self.update()

    def set_points(self, loss: list[tuple[int, float]], iou: list[tuple[int, float]]) -> None:
        """Show these points (a restored or restarted history)."""
        self.loss = [(s, v) for s, v in loss if math.isfinite(v)]
        self.iou = list(iou)
        self.update()

    def add_loss(self, step: int, value: float) -> None:
        if math.isfinite(value):
            self.loss.append((step, value))
            if len(self.loss) > MAX_POINTS:  # keep painting cheap on long runs
                self.loss = self.loss[::2]
            self.update()

    def add_iou(self, step: int, value: float) -> None:
        self.iou.append((step, value))
        self.update()

    def smoothed_loss(self) -> list[tuple[int, float]]:
        return smoothed(self.loss)

    def paintEvent(self, event: Any) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        fm = p.fontMetrics()
        th = fm.height()
        w, h = self.width(), self.height()
        left, right = fm.horizontalAdvance("0.000") + th + 8, fm.horizontalAdvance("1.0") + th + 8
        area = QRectF(left, th + 6, max(1, w - left - right), max(1, h - 3 * th - 10))
        p.fillRect(self.rect(), QColor(38, 41, 48))
        first = min([s for s, _ in self.loss] + [s for s, _ in self.iou] + [0])
        last = max([s for s, _ in self.loss] + [s for s, _ in self.iou] + [first + 10])

        def x_of(step: float) -> float:
            return area.left() + area.width() * (step - first) / (last - first)

        # step ticks and axis title
        p.setPen(TEXT_COLOR)
        for t in nice_ticks(first, last, 4):
            x = x_of(t)
            p.setPen(QPen(GRID_COLOR, 1))
            p.drawLine(QPointF(x, area.top()), QPointF(x, area.bottom()))
            p.setPen(TEXT_COLOR)
            p.drawText(QRectF(x - 40, area.bottom() + 2, 80, th), Qt.AlignmentFlag.AlignCenter, f"{int(t)}")
        p.drawText(QRectF(0, h - th - 2, w, th), Qt.AlignmentFlag.AlignCenter, "training step")

        curve = self.smoothed_loss()
        if curve:
            vals = [math.log10(max(v, 1e-12)) for _, v in curve]
            lo, hi = min(vals), max(vals)
            if hi - lo < 0.05:
                lo, hi = lo - 0.05, hi + 0.05

            def y_of(v: float) -> float:
                return area.bottom() - area.height() * (math.log10(max(v, 1e-12)) - lo) / (hi - lo)

            ticks = [10**e * m for e in range(math.floor(lo), math.ceil(hi) + 1) for m in (1, 2, 5)]
            ticks = [t for t in ticks if lo <= math.log10(t) <= hi] or [10**lo, 10**hi]
            if len(ticks) > 5:
                ticks = [t for t in ticks if f"{t:.0e}".startswith("1")] or ticks[:: len(ticks) // 4]
            for t in ticks:
                y = y_of(t)
                p.setPen(QPen(GRID_COLOR, 1))
                p.drawLine(QPointF(area.left(), y), QPointF(area.right(), y))
                p.setPen(LOSS_COLOR)
                p.drawText(QRectF(th + 2, y - th / 2, left - th - 6, th), Qt.AlignmentFlag.AlignRight, _fmt(t))
            p.setPen(QPen(LOSS_COLOR, 1.8))
            p.drawPolyline(QPolygonF([QPointF(x_of(s), y_of(v)) for s, v in curve]))
        if self.iou:
            pts = [QPointF(x_of(s), area.bottom() - area.height() * v) for s, v in self.iou]
            p.setPen(QPen(IOU_COLOR, 2))
            p.drawPolyline(QPolygonF(pts))
            for pt in pts:
                p.drawEllipse(pt, 2.5, 2.5)
        show_iou = bool(self.iou) or self.held_out
        p.setPen(IOU_COLOR)
        for v in (0.0, 0.5, 1.0) if show_iou else ():
            y = area.bottom() - area.height() * v
            p.drawText(QRectF(area.right() + 3, y - th / 2, right - th - 4, th), Qt.AlignmentFlag.AlignLeft, f"{v:.1f}")
        p.setPen(QPen(QColor(120, 120, 120), 1))
        p.drawRect(area)
        # axis titles, rotated along the sides
        titles = [(2, "loss (smoothed)", LOSS_COLOR)] + ([(w - th - 2, "IoU", IOU_COLOR)] if show_iou else [])
        for x, text, color in titles:
            p.save()
            p.setPen(color)
            p.translate(x + th, area.center().y())
            p.rotate(-90)
            p.drawText(QRectF(-area.height() / 2, -th, area.height(), th), Qt.AlignmentFlag.AlignCenter, text)
            p.restore()
        p.setPen(IOU_COLOR if show_iou else TEXT_COLOR)
        label = self.title()
        p.drawText(QRectF(area.left(), 2, area.width(), th), Qt.AlignmentFlag.AlignRight, label)
        p.setPen(LOSS_COLOR)
        p.drawText(QRectF(area.left(), 2, area.width(), th), Qt.AlignmentFlag.AlignLeft,
                   f"loss {curve[-1][1]:.3g}" if curve else "loss")
        p.end()
