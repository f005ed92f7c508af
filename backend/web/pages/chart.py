"""The time series chart, laid out in Python and drawn by the template as inline SVG.

Coordinates only: the template writes them into presentation attributes and classes (the
CSP forbids style attributes), and every label goes through Jinja's autoescaping. It is laid
out twice, wide and narrow, and the stylesheet shows the one that fits the screen: an SVG
scaled down to a phone's width would shrink its labels past reading.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Frame:
    """A layout's size, margins and how many bucket labels fit under it."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    labels: int


WIDE = Frame(720, 220, 44, 44, 12, 28, 8)
NARROW = Frame(360, 220, 36, 30, 12, 28, 4)


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    clicks: int
    conversions: int
    previous_clicks: int | None  # the same bucket of the period before, if it has one


@dataclass(frozen=True, slots=True)
class Chart:
    frame: Frame
    bars: list[Bar]
    line: str  # polyline points of conversions
    previous_line: str  # polyline points of the period before's clicks ("" without one)
    ticks: list[tuple[float, str]]  # x, label
    clicks_axis: list[tuple[float, int]]  # y, value: 0, half and the top of the clicks scale
    conversions_axis: list[tuple[float, int]]  # y, value: 0 and the top of the conversions'
    baseline: float

    @property
    def width(self) -> int:
        return self.frame.width

    @property
    def height(self) -> int:
        return self.frame.height

    @property
    def max_clicks(self) -> int:
        return self.clicks_axis[-1][1]

    @property
    def max_conversions(self) -> int:
        return self.conversions_axis[-1][1]

    @property
    def empty(self) -> bool:
        return not any(bar.clicks or bar.conversions for bar in self.bars)


def _scale_top(value: int) -> int:
    """A round number at or above ``value``, so the axis labels read well (even, so that
    half of it is a whole number too)."""
    if value <= 4:
        return 4
    magnitude = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 4, 5, 10):
        if step * magnitude >= value:
            return int(step * magnitude)
    return value


def lay_out(
    series: list[tuple[str, int, int]], previous: list[int] | None = None, frame: Frame = WIDE
) -> Chart:
    """``series``: (bucket label, clicks, conversions) in time order; ``previous``: the clicks
    of the period before, bucket by bucket, drawn as a dashed line on the same scale."""
    before = previous or []
    plot_width = frame.width - frame.left - frame.right
    plot_height = frame.height - frame.top - frame.bottom
    top_clicks = _scale_top(max([clicks for _, clicks, _ in series] + before, default=0))
    top_conversions = _scale_top(max((conv for _, _, conv in series), default=0))
    slot = plot_width / max(len(series), 1)
    baseline = frame.top + plot_height

    def height_of(value: int, top: int) -> float:
        return plot_height * value / top

    bars: list[Bar] = []
    points: list[str] = []
    previous_points: list[str] = []
    for index, (label, clicks, conversions) in enumerate(series):
        x = frame.left + index * slot
        middle = x + slot / 2
        height = height_of(clicks, top_clicks)
        earlier = before[index] if index < len(before) else None
        bars.append(
            Bar(
                round(x + slot * 0.15, 1),
                round(baseline - height, 1),
                round(slot * 0.7, 1),
                round(height, 1),
                label,
                clicks,
                conversions,
                earlier,
            )
        )
        points.append(f"{middle:.1f},{baseline - height_of(conversions, top_conversions):.1f}")
        if earlier is not None:
            previous_points.append(f"{middle:.1f},{baseline - height_of(earlier, top_clicks):.1f}")
    every = max(1, -(-len(series) // frame.labels))
    ticks = [
        (round(frame.left + index * slot + slot / 2, 1), label)
        for index, (label, _, _) in enumerate(series)
        if index % every == 0
    ]
    clicks_axis = [
        (round(baseline - height_of(value, top_clicks), 1), value)
        for value in (0, top_clicks // 2, top_clicks)
    ]
    conversions_axis = [(baseline, 0), (float(frame.top), top_conversions)]
    return Chart(
        frame,
        bars,
        " ".join(points),
        " ".join(previous_points),
        ticks,
        clicks_axis,
        conversions_axis,
        baseline,
    )
