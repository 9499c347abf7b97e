"""The chat window's Health view: live charts of the daemon's SLO signals, for people without Kibana.

Two layers, so the arithmetic is tested without a display:

* ``HealthSeries`` (``trayllm.chat.health_series``, plain Python, no Qt) turns the ``DaemonStatus`` the
  window already polls from /v1/status into four bounded time series: first-token latency P99, decode
  tokens/s, VRAM % and error rate.
* ``HealthView`` (Qt) draws each series with ``LineChart``, a small QPainter widget. It is used instead
  of pyqtgraph or QtCharts because four plain lines with a dashed threshold need about a hundred lines
  of painting, add neither numpy nor PySide6-Addons (157 MB) to the ``gui`` extra nor pyqtgraph's
  ~1 s of import time, and render identically under ``QT_QPA_PLATFORM=offscreen`` in CI.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen, QPolygonF
from PySide6.QtWidgets import QGridLayout, QLabel, QSizePolicy, QWidget

from trayllm.api_status import DaemonStatus
from trayllm.chat.health_series import MAX_SAMPLES, NO_DATA, NO_VRAM, WINDOW_S, HealthSeries, Point, Series

__all__ = ["NO_DATA", "NO_VRAM", "HealthSeries", "HealthView", "LineChart", "Point", "Series"]


class LineChart(QWidget):
    """A minimal time/value line chart: the last ``WINDOW_S`` seconds, gaps at None, a dashed threshold."""

    LINE = QColor("#2b7bb9")
    LIMIT = QColor("#d9534f")

    def __init__(self, series: Series, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.series = series
        self.setMinimumSize(240, 90)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(420, 120)

    def _visible(self) -> list[Point]:
        if not self.series.points:
            return []
        end = self.series.points[-1].at
        return [p for p in self.series.points if p.at >= end - WINDOW_S]

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt's name)
        """Draw frame, y scale, threshold and the line; "no data" when nothing in the window has a value."""
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), self.palette().base())
        plot = QRectF(self.rect()).adjusted(44, 8, -8, -8)
        painter.setPen(QPen(self.palette().mid().color()))
        painter.drawRect(plot)

        points = self._visible()
        values = [p.value for p in points if p.value is not None and math.isfinite(p.value)]
        limit = self.series.threshold
        top = max([*values, (limit or 0.0) * 1.25, 1e-9])
        top = _nice_ceiling(top)
        painter.setPen(self.palette().text().color())
        text_rect = QRectF(0, plot.top() - 6, plot.left() - 4, 14)
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignRight, _short(top))
        painter.drawText(text_rect.translated(0, plot.height() - 2), Qt.AlignmentFlag.AlignRight, "0")

        def y_of(value: float) -> float:
            return plot.bottom() - min(max(value / top, 0.0), 1.0) * plot.height()

        if limit is not None:
            pen = QPen(self.LIMIT, 1, Qt.PenStyle.DashLine)
            painter.setPen(pen)
            painter.drawLine(QPointF(plot.left(), y_of(limit)), QPointF(plot.right(), y_of(limit)))

        if not values:
            painter.setPen(self.palette().placeholderText().color())
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, self.series.empty_text)
            painter.end()
            return

        # One drawPolyline per run rather than a lineTo per point: far fewer Qt calls per paint, which
        # matters while PySide6 6.12 on Python 3.11 drops a reference to None on each void call.
        end = points[-1].at
        painter.setPen(QPen(self.LINE, 2))
        for run in _runs(points):
            line = QPolygonF(
                [QPointF(plot.right() - (end - at) / WINDOW_S * plot.width(), y_of(value)) for at, value in run]
            )
            if len(run) == 1:
                painter.drawEllipse(line.first(), 1.5, 1.5)
            else:
                painter.drawPolyline(line)
        painter.end()


def _runs(points: Iterable[Point]) -> list[list[tuple[float, float]]]:
    """Split the points into runs of consecutive known values; a None breaks the line."""
    runs: list[list[tuple[float, float]]] = [[]]
    for p in points:
        if p.value is None or not math.isfinite(p.value):
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((p.at, p.value))
    return [run for run in runs if run]


def _nice_ceiling(value: float) -> float:
    """Round the y-axis top up to 1, 2 or 5 times a power of ten, so the scale reads easily."""
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        nice = step * 10.0**exponent
        if nice >= value * (1 - 1e-9):
            return nice
    return 10.0 ** (exponent + 1)


def _short(value: float) -> str:
    return f"{value:g}"


class HealthView(QWidget):
    """Four live charts with their current values; the chat window feeds it from its status polling."""

    def __init__(self, parent: QWidget | None = None, maxlen: int = MAX_SAMPLES) -> None:
        super().__init__(parent)
        self.series = HealthSeries(maxlen)
        self.charts: dict[str, LineChart] = {}
        self.labels: dict[str, QLabel] = {}
        grid = QGridLayout(self)
        for row, series in enumerate(self.series.all):
            label = QLabel(series.label(), self)
            label.setObjectName(f"health_{series.key}_label")
            label.setMinimumWidth(170)
            label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            chart = LineChart(series, self)
            chart.setObjectName(f"health_{series.key}_chart")
            grid.addWidget(label, row, 0)
            grid.addWidget(chart, row, 1)
            self.labels[series.key] = label
            self.charts[series.key] = chart
        grid.setColumnStretch(1, 1)

    def add_sample(self, status: DaemonStatus, at: float) -> None:
        """Record one /v1/status poll taken at Unix time ``at`` and redraw."""
        self.series.add(status, at)
        for series in self.series.all:
            self.labels[series.key].setText(series.label())
            self.charts[series.key].update()
