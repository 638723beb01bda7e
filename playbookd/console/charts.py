"""Charts as inline SVG, drawn on the server: no script, no library, works offline and under a CSP
without 'unsafe-inline' (SVG presentation attributes are not styles)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

WIDTH, HEIGHT, PAD = 640, 160, 24


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass
class Chart:
    title: str
    bars: list[Bar] = field(default_factory=list)
    line: str = ""  # polyline points, for a trend
    dots: list[tuple[float, float, str]] = field(default_factory=list)
    top: str = ""  # the value at the top of the scale
    first: str = ""
    last: str = ""
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def empty(self) -> bool:
        return not self.bars and not self.dots


def bars(title: str, series: Sequence[tuple[str, int]]) -> Chart:
    """One bar per (label, value), e.g. per day; labels of the first and last shown under the axis."""
    chart = Chart(title)
    if not series:
        return chart
    top = max(max(v for _, v in series), 1)
    step = (WIDTH - 2 * PAD) / len(series)
    for index, (label, value) in enumerate(series):
        height = (HEIGHT - 2 * PAD) * value / top
        chart.bars.append(Bar(round(PAD + index * step, 1), round(HEIGHT - PAD - height, 1),
                              round(max(step - 1, 1), 1), round(height, 1), f"{label}: {value}"))
    chart.top, chart.first, chart.last = str(top), series[0][0], series[-1][0]
    return chart


def trend(title: str, series: Sequence[tuple[str, float]], top: float = 100.0) -> Chart:
    """A line over a fixed 0..top scale (a health score is 0-100)."""
    chart = Chart(title)
    if not series:
        return chart
    step = (WIDTH - 2 * PAD) / max(len(series) - 1, 1)
    for index, (label, value) in enumerate(series):
        x = round(PAD + index * step, 1)
        y = round(HEIGHT - PAD - (HEIGHT - 2 * PAD) * min(max(value, 0.0), top) / top, 1)
        chart.dots.append((x, y, f"{label}: {value:g}"))
    chart.line = " ".join(f"{x},{y}" for x, y, _ in chart.dots)
    chart.top, chart.first, chart.last = f"{top:g}", series[0][0], series[-1][0]
    return chart
