"""The overview: KPI tiles with their change against the previous period, and the series."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import HOUR_MS, now_ms
from backend.core.scope import Viewer
from backend.domain.reports.dimensions import Filters
from backend.domain.reports.metrics import (
    collect,
    converted_clicks,
    opted_out_sales,
    unattributed,
)
from backend.domain.reports.ranges import DateRange
from backend.storage.rollups.dimensions import DIMENSIONS
from backend.storage.rollups.measures import Metrics


@dataclass(frozen=True, slots=True)
class Tile:
    key: str
    label: str
    value: str  # what the tile shows, unless it shows money
    change: float | None  # against the previous period; None when it had nothing
    amount_minor: int | None = None  # money: the page writes it in its currency's style
    currency: str = ""


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


def _money(key: str, label: str, amount: int | None, change: float | None, code: str) -> Tile:
    """A tile of money in ``code`` (None: nothing to show, a dash)."""
    return Tile(key, label, NOTHING, change, amount, code)


@dataclass(frozen=True, slots=True)
class Period:
    """One period's figures for the tiles."""

    metrics: Metrics  # the programme's: clicks, and the conversions partners brought
    converted: int  # billable clicks that led to a sale
    unattributed: Metrics  # the sales no partner brought
    opted_out: int = 0  # of those, the sales of buyers who asked not to be tracked
    shown_clicks: int = 0  # clicks on the links whose impressions were counted

    @property
    def ctr(self) -> float | None:
        """Clicks over impressions of the same links: a link shared where no snippet counts
        its impressions (a newsletter, a video) adds clicks without impressions, and would
        push the rate over 100%."""
        impressions = self.metrics.impressions
        return self.shown_clicks / impressions if impressions else None

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
            Tile("ctr", "CTR", _percent(now.ctr), _change(now.ctr, before.ctr)),
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
            _money(
                f"revenue-{code}",
                f"Revenue from partners {code}",
                m.revenue(code),
                _change(m.revenue(code), b.revenue(code)),
                code,
            ),
            _money(
                f"commission-{code}",
                f"Commission {code}",
                m.commission(code),
                _change(m.commission(code), b.commission(code)),
                code,
            ),
            _money(
                f"epc-{code}",
                f"EPC {code}",
                None if epc is None else round(epc),
                _change(epc, b.epc(code)),
                code,
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
            _money(
                f"unattributed-revenue-{code}",
                f"Their revenue {code}",
                u.revenue(code),
                _change(u.revenue(code), ub.revenue(code)),
                code,
            )
            for code in sorted(set(u.currencies) | set(ub.currencies))
        ]
    return shown


async def clicks_on_shown_links(
    session: AsyncSession, viewer: Viewer, start_ms: int, end_ms: int, filters: Filters
) -> int:
    """The billable clicks of ``[start_ms, end_ms)`` on links with impressions counted in it:
    the CTR's numerator, in the same scope as its denominator."""
    if filters.texts:
        return 0  # impressions have no text dimensions: no CTR is shown
    by_link = await collect(session, viewer, start_ms, end_ms, filters, DIMENSIONS["link"])
    return sum(figures.clicks for figures in by_link.values() if figures.impressions)


def comparable_end(period: DateRange, before: DateRange, at_ms: int) -> int:
    """Where the previous period's comparison stops: a period still running (today, this
    week) is compared with as many hours of the one before, not with all of it."""
    elapsed_hours = -(-(at_ms - period.start_ms) // HOUR_MS)
    return min(before.end_ms, before.start_ms + max(elapsed_hours, 1) * HOUR_MS)


Hours = dict[int, Metrics]  # figures by the start of their UTC hour


async def _programme_hours(
    session: AsyncSession, viewer: Viewer, period: DateRange, filters: Filters
) -> tuple[Hours, Hours]:
    """The programme's figures of ``period`` by UTC hour, and apart the shop's own sales by
    hour, which the programme's leave out."""
    hourly = await collect(
        session, viewer, period.start_ms, period.end_ms, filters, bucket_ms=HOUR_MS
    )
    shop: Hours = {
        hour: figures
        for hour, figures in (
            await unattributed(
                session, viewer, period.start_ms, period.end_ms, filters, bucket_ms=HOUR_MS
            )
        ).items()
        if hour is not None
    }
    programme: Hours = {}
    for (hour, _), figures in hourly.items():
        if hour is None:
            continue
        if hour in shop:
            figures.merge(shop[hour], sign=-1)
        programme[hour] = figures
    return programme, shop


def _summed(by_hour: Hours, end_ms: int | None = None) -> Metrics:
    """The hours' figures added up, those before ``end_ms`` only when it is given."""
    summed = Metrics()
    for hour, figures in by_hour.items():
        if end_ms is None or hour < end_ms:
            summed.merge(figures)
    return summed


def _bucketed(period: DateRange, by_hour: Hours) -> list[BucketRow]:
    rows: list[BucketRow] = []
    for bucket in period.buckets():
        metrics = Metrics()
        for hour, figures in by_hour.items():
            if bucket.start_ms <= hour < bucket.end_ms:
                metrics.merge(figures)
        rows.append(BucketRow(bucket.label, metrics))
    return rows


async def overview_report(
    session: AsyncSession, viewer: Viewer, period: DateRange, filters: Filters
) -> OverviewReport:
    hourly, shop_hours = await _programme_hours(session, viewer, period, filters)
    before = period.previous()
    previous_hours, previous_shop_hours = await _programme_hours(session, viewer, before, filters)
    # The tiles compare with as much of the period before as this one has run (whole hours).
    before_end = comparable_end(period, before, now_ms())
    previous = _summed(previous_hours, before_end)
    previous_shop = _summed(previous_shop_hours, before_end)
    rows = _bucketed(period, hourly)
    overall = _summed(hourly)
    shop = _summed(shop_hours)
    now_period = Period(
        overall,
        await converted_clicks(session, viewer, period.start_ms, period.end_ms, filters),
        shop,
        await opted_out_sales(session, viewer, period.start_ms, period.end_ms, filters),
        await clicks_on_shown_links(session, viewer, period.start_ms, period.end_ms, filters),
    )
    before_period = Period(
        previous,
        await converted_clicks(session, viewer, before.start_ms, before_end, filters),
        previous_shop,
        await opted_out_sales(session, viewer, before.start_ms, before_end, filters),
        await clicks_on_shown_links(session, viewer, before.start_ms, before_end, filters),
    )
    currencies = sorted(set(overall.currencies) | set(previous.currencies))
    return OverviewReport(
        totals=overall,
        previous=previous,
        tiles=tiles(now_period, before_period, currencies, impressions=not filters.texts),
        rows=rows,
        previous_rows=_bucketed(before, previous_hours),
        currencies=currencies,
        unattributed=shop,
        previous_unattributed=previous_shop,
    )
