"""The overview: KPI tiles with their change against the previous period, and the series."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import HOUR_MS, now_ms
from backend.core.money import format_minor
from backend.core.scope import Viewer
from backend.domain.reports.dimensions import Filters
from backend.domain.reports.metrics import (
    collect,
    converted_clicks,
    opted_out_sales,
    totals,
    unattributed,
)
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
    """The programme's results (clicks and the sales partners brought) and, apart, the shop's
    own sales that no partner brought."""

    totals: Metrics
    previous: Metrics
    tiles: list[Tile]
    rows: list[BucketRow]
    previous_rows: list[BucketRow]  # the period before, bucket by bucket (for the chart)
    currencies: list[str]
    unattributed: Metrics
    previous_unattributed: Metrics


NOTHING = "\u2013"  # an en dash where a ratio has no denominator


def _change(now: float | None, before: float | None) -> float | None:
    if now is None or not before:
        return None
    return (now - before) / before


def _percent(value: float | None) -> str:
    return NOTHING if value is None else f"{value * 100:.1f}%"


@dataclass(frozen=True, slots=True)
class Period:
    """One period's figures for the tiles."""

    metrics: Metrics  # the programme's: clicks, and the conversions partners brought
    converted: int  # billable clicks that led to a sale
    unattributed: Metrics  # the sales no partner brought
    opted_out: int = 0  # of those, the sales of buyers who asked not to be tracked

    @property
    def conversion_rate(self) -> float | None:
        """Of the billable clicks, the share that led to a sale: at most 100%."""
        clicks = self.metrics.clicks
        return self.converted / clicks if clicks else None


def tiles(now: Period, before: Period, currencies: list[str], impressions: bool) -> list[Tile]:
    m, b = now.metrics, before.metrics
    shown: list[Tile] = [
        Tile("clicks", "Clicks", str(m.clicks), _change(m.clicks, b.clicks)),
        Tile(
            "unique",
            "Unique clicks",
            str(m.unique_clicks),
            _change(m.unique_clicks, b.unique_clicks),
        ),
    ]
    if impressions:
        shown += [
            Tile(
                "impressions",
                "Impressions",
                str(m.impressions),
                _change(m.impressions, b.impressions),
            ),
            Tile("ctr", "CTR", _percent(m.ctr), _change(m.ctr, b.ctr)),
        ]
    shown += [
        Tile(
            "conversions",
            "Conversions from partners",
            str(m.conversions),
            _change(m.conversions, b.conversions),
        ),
        Tile(
            "conversion-rate",
            "Conversion rate",
            _percent(now.conversion_rate),
            _change(now.conversion_rate, before.conversion_rate),
        ),
    ]
    for code in currencies:
        epc = m.epc(code)
        shown += [
            Tile(
                f"revenue-{code}",
                f"Revenue from partners {code}",
                format_minor(m.revenue(code), code),
                _change(m.revenue(code), b.revenue(code)),
            ),
            Tile(
                f"commission-{code}",
                f"Commission {code}",
                format_minor(m.commission(code), code),
                _change(m.commission(code), b.commission(code)),
            ),
            Tile(
                f"epc-{code}",
                f"EPC {code}",
                NOTHING if epc is None else format_minor(round(epc), code),
                _change(epc, b.epc(code)),
            ),
        ]
    u, ub = now.unattributed, before.unattributed
    if u.conversions or ub.conversions:
        shown.append(
            Tile(
                "unattributed",
                "Sales without a partner",
                str(u.conversions),
                _change(u.conversions, ub.conversions),
            )
        )
        shown.append(
            Tile(
                "opted-out",
                "Of them, buyers who opted out of tracking",
                str(now.opted_out),
                _change(now.opted_out, before.opted_out),
            )
        )
        shown += [
            Tile(
                f"unattributed-revenue-{code}",
                f"Their revenue {code}",
                format_minor(u.revenue(code), code),
                _change(u.revenue(code), ub.revenue(code)),
            )
            for code in sorted(set(u.currencies) | set(ub.currencies))
        ]
    return shown


def comparable_end(period: DateRange, before: DateRange, at_ms: int) -> int:
    """Where the previous period's comparison stops: a period still running (today, this
    week) is compared with as many hours of the one before, not with all of it."""
    elapsed_hours = -(-(at_ms - period.start_ms) // HOUR_MS)
    return min(before.end_ms, before.start_ms + max(elapsed_hours, 1) * HOUR_MS)


async def _programme_hours(
    session: AsyncSession, viewer: Viewer, period: DateRange, filters: Filters
) -> tuple[dict[int | None, Metrics], Metrics]:
    """The programme's figures of ``period`` by UTC hour, and apart the shop's own sales,
    which they leave out."""
    hourly = await collect(
        session, viewer, period.start_ms, period.end_ms, filters, bucket_ms=HOUR_MS
    )
    shop_only = await unattributed(
        session, viewer, period.start_ms, period.end_ms, filters, bucket_ms=HOUR_MS
    )
    by_hour: dict[int | None, Metrics] = {}
    for (hour, _), figures in hourly.items():
        if hour in shop_only:
            figures.merge(shop_only[hour], sign=-1)
        by_hour[hour] = figures
    shop = Metrics()
    for figures in shop_only.values():
        shop.merge(figures)
    return by_hour, shop


def _bucketed(period: DateRange, by_hour: dict[int | None, Metrics]) -> list[BucketRow]:
    rows: list[BucketRow] = []
    for bucket in period.buckets():
        metrics = Metrics()
        for hour, figures in by_hour.items():
            if hour is not None and bucket.start_ms <= hour < bucket.end_ms:
                metrics.merge(figures)
        rows.append(BucketRow(bucket.label, metrics))
    return rows


async def overview_report(
    session: AsyncSession, viewer: Viewer, period: DateRange, filters: Filters
) -> OverviewReport:
    hourly, shop = await _programme_hours(session, viewer, period, filters)
    before = period.previous()
    previous_hours, _ = await _programme_hours(session, viewer, before, filters)
    previous_rows = _bucketed(before, previous_hours)
    before_end = comparable_end(period, before, now_ms())
    previous = await totals(session, viewer, before.start_ms, before_end, filters)
    previous_shop = (await unattributed(session, viewer, before.start_ms, before_end, filters)).get(
        None, Metrics()
    )
    previous.merge(previous_shop, sign=-1)
    overall = Metrics()
    rows = _bucketed(period, hourly)
    for row in rows:
        overall.merge(row.metrics)
    now_period = Period(
        overall,
        await converted_clicks(session, viewer, period.start_ms, period.end_ms, filters),
        shop,
        await opted_out_sales(session, viewer, period.start_ms, period.end_ms, filters),
    )
    before_period = Period(
        previous,
        await converted_clicks(session, viewer, before.start_ms, before_end, filters),
        previous_shop,
        await opted_out_sales(session, viewer, before.start_ms, before_end, filters),
    )
    currencies = sorted(set(overall.currencies) | set(previous.currencies))
    return OverviewReport(
        totals=overall,
        previous=previous,
        tiles=tiles(now_period, before_period, currencies, impressions=not filters.texts),
        rows=rows,
        previous_rows=previous_rows,
        currencies=currencies,
        unattributed=shop,
        previous_unattributed=previous_shop,
    )
