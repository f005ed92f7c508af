"""The time series chart, laid out in Python and drawn by the template as inline SVG.

Coordinates only: the template writes them into presentation attributes and classes (the
CSP forbids style attributes), and every label goes through Jinja's autoescaping.
"""

from __future__ import annotations

from dataclasses import dataclass

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 44, 12, 28


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    clicks: int
    conversions: int


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    line: str  # polyline points of conversions
    ticks: list[tuple[float, str]]  # x, label
    max_clicks: int
    max_conversions: int
    baseline: float

    @property
    def empty(self) -> bool:
        return not any(bar.clicks or bar.conversions for bar in self.bars)


def _scale_top(value: int) -> int:
    """A round number at or above ``value``, so the axis labels read well."""
    if value <= 5:
        return 5
    magnitude = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return int(step * magnitude)
    return value


def lay_out(series: list[tuple[str, int, int]]) -> Chart:
    """``series``: (bucket label, clicks, conversions) in time order."""
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    max_clicks = _scale_top(max((clicks for _, clicks, _ in series), default=0))
    max_conversions = _scale_top(max((conv for _, _, conv in series), default=0))
    slot = plot_width / max(len(series), 1)
    bars: list[Bar] = []
    points: list[str] = []
    baseline = TOP + plot_height
    for index, (label, clicks, conversions) in enumerate(series):
        height = plot_height * clicks / max_clicks
        x = LEFT + index * slot
        bars.append(
            Bar(
                round(x + slot * 0.15, 1),
                round(baseline - height, 1),
                round(slot * 0.7, 1),
                round(height, 1),
                label,
                clicks,
                conversions,
            )
        )
        y = baseline - plot_height * conversions / max_conversions
        points.append(f"{x + slot / 2:.1f},{y:.1f}")
    every = max(1, len(series) // 8)
    ticks = [
        (round(LEFT + index * slot + slot / 2, 1), label)
        for index, (label, _, _) in enumerate(series)
        if index % every == 0
    ]
    return Chart(
        WIDTH, HEIGHT, bars, " ".join(points), ticks, max_clicks, max_conversions, baseline
    )
