"""The overview: KPI tiles with their change against the previous period, and the series."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import HOUR_MS, now_ms
from backend.core.money import format_minor
from backend.core.scope import Viewer
from backend.domain.reports.dimensions import Filters
from backend.domain.reports.metrics import collect, totals
from backend.domain.reports.ranges import DateRange
from backend.storage.rollups.measures import Metrics


@dataclass(frozen=True, slots=True)
class Tile:
    key: str
    label: str
    value: str
    change: float | None  # against the previous period; None when it had nothing


@dataclass(frozen=True, slots=True)
class BucketRow:
    label: str
    metrics: Metrics


@dataclass(frozen=True, slots=True)
class OverviewReport:
    totals: Metrics
    previous: Metrics
    tiles: list[Tile]
    rows: list[BucketRow]
    currencies: list[str]


NOTHING = "\u2013"  # an en dash where a ratio has no denominator


def _change(now: float | None, before: float | None) -> float | None:
    if now is None or not before:
        return None
    return (now - before) / before


def _percent(value: float | None) -> str:
    return NOTHING if value is None else f"{value * 100:.1f}%"


def tiles(now: Metrics, before: Metrics, currencies: list[str], impressions: bool) -> list[Tile]:
    shown: list[Tile] = [
        Tile("clicks", "Clicks", str(now.clicks), _change(now.clicks, before.clicks)),
        Tile(
            "unique",
            "Unique clicks",
            str(now.unique_clicks),
            _change(now.unique_clicks, before.unique_clicks),
        ),
    ]
    if impressions:
        shown += [
            Tile(
                "impressions",
                "Impressions",
                str(now.impressions),
                _change(now.impressions, before.impressions),
            ),
            Tile("ctr", "CTR", _percent(now.ctr), _change(now.ctr, before.ctr)),
        ]
    shown += [
        Tile(
            "conversions",
            "Conversions",
            str(now.conversions),
            _change(now.conversions, before.conversions),
        ),
        Tile(
            "conversion-rate",
            "Conversion rate",
            _percent(now.conversion_rate),
            _change(now.conversion_rate, before.conversion_rate),
        ),
    ]
    for code in currencies:
        epc = now.epc(code)
        shown += [
            Tile(
                f"revenue-{code}",
                f"Revenue {code}",
                format_minor(now.revenue(code), code),
                _change(now.revenue(code), before.revenue(code)),
            ),
            Tile(
                f"commission-{code}",
                f"Commission {code}",
                format_minor(now.commission(code), code),
                _change(now.commission(code), before.commission(code)),
            ),
            Tile(
                f"epc-{code}",
                f"EPC {code}",
                NOTHING if epc is None else format_minor(round(epc), code),
                _change(epc, before.epc(code)),
            ),
        ]
    return shown


def comparable_end(period: DateRange, before: DateRange, at_ms: int) -> int:
    """Where the previous period's comparison stops: a period still running (today, this
    week) is compared with as many hours of the one before, not with all of it."""
    elapsed_hours = -(-(at_ms - period.start_ms) // HOUR_MS)
    return min(before.end_ms, before.start_ms + max(elapsed_hours, 1) * HOUR_MS)


async def overview_report(
    session: AsyncSession, viewer: Viewer, period: DateRange, filters: Filters
) -> OverviewReport:
    hourly = await collect(
        session, viewer, period.start_ms, period.end_ms, filters, bucket_ms=HOUR_MS
    )
    before = period.previous()
    previous = await totals(
        session, viewer, before.start_ms, comparable_end(period, before, now_ms()), filters
    )
    overall = Metrics()
    rows: list[BucketRow] = []
    for bucket in period.buckets():
        metrics = Metrics()
        for (hour, _), figures in hourly.items():
            if hour is not None and bucket.start_ms <= hour < bucket.end_ms:
                metrics.merge(figures)
        overall.merge(metrics)
        rows.append(BucketRow(bucket.label, metrics))
    currencies = sorted(set(overall.currencies) | set(previous.currencies))
    return OverviewReport(
        totals=overall,
        previous=previous,
        tiles=tiles(overall, previous, currencies, impressions=not filters.texts),
        rows=rows,
        currencies=currencies,
    )
