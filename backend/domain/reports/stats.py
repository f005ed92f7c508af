"""The stats API's answer: totals and breakdowns by day, partner, campaign, link or conversion
source (network; its rows count the clicks of its merchant's links), within a
viewer's scope, in the shape the API promises; the figures are the report engine's
(``backend.domain.reports.metrics``).

Traffic counts add up across currencies; money never does: each currency is reported apart,
and the single ``revenue_minor`` figure is given only when one currency is involved.
Conversions are also split into verified and unverified (``measures.Verification``).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Literal

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import DAY_MS
from backend.core.scope import Viewer
from backend.domain.reports.dimensions import Filters
from backend.domain.reports.metrics import SOURCE, Key, by_source, collect, verification
from backend.storage.rollups.dimensions import DIMENSIONS
from backend.storage.rollups.measures import Metrics, Verification

GroupBy = Literal[
    "day",
    "source",
    "partner",
    "campaign",
    "link",
    "referrer",
    "landing",
    "device",
    "browser",
    "os",
    "country",
    "sub1",
    "sub2",
    "sub3",
    "sub4",
    "sub5",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "flags",
]
"""``day``, ``source`` (the network that reported a conversion) or any of the pages'
dimensions (``backend.storage.rollups.dimensions``), by the same names."""


class CurrencyTotals(msgspec.Struct):
    currency: str
    conversions: int = 0
    revenue_minor: int = 0
    commission_minor: int = 0
    verified_conversions: int = 0
    verified_revenue_minor: int = 0
    unverified_conversions: int = 0
    unverified_revenue_minor: int = 0


class Totals(msgspec.Struct):
    clicks: int = 0
    unique_clicks: int = 0
    bot_clicks: int = 0
    flagged_clicks: int = 0
    impressions: int = 0
    conversions: int = 0
    verified_conversions: int = 0
    unverified_conversions: int = 0
    revenue_minor: int | None = None
    commission_minor: int | None = None
    verified_revenue_minor: int | None = None
    unverified_revenue_minor: int | None = None
    currency: str | None = None
    by_currency: list[CurrencyTotals] = msgspec.field(default_factory=list)


class StatsRow(msgspec.Struct):
    key: str | int
    totals: Totals


class StatsReport(msgspec.Struct):
    start: datetime
    end: datetime
    group_by: str | None
    totals: Totals
    rows: list[StatsRow]


def _totals(metrics: Metrics, split: dict[str, Verification]) -> Totals:
    by_currency = [
        CurrencyTotals(
            currency=code,
            conversions=money.conversions,
            revenue_minor=money.revenue_minor,
            commission_minor=money.commission_minor,
            **asdict(split.get(code, Verification())),
        )
        for code, money in sorted(metrics.money.items())
    ]
    single = by_currency[0] if len(by_currency) == 1 else None
    none = 0 if not by_currency else None  # nothing sold: 0; several currencies: no one sum
    return Totals(
        clicks=metrics.clicks,
        unique_clicks=metrics.unique_clicks,
        bot_clicks=metrics.bot_clicks,
        flagged_clicks=metrics.flagged_clicks,
        impressions=metrics.impressions,
        conversions=sum(c.conversions for c in by_currency),
        verified_conversions=sum(c.verified_conversions for c in by_currency),
        unverified_conversions=sum(c.unverified_conversions for c in by_currency),
        verified_revenue_minor=single.verified_revenue_minor if single else none,
        unverified_revenue_minor=single.unverified_revenue_minor if single else none,
        revenue_minor=single.revenue_minor if single else none,
        commission_minor=single.commission_minor if single else none,
        currency=single.currency if single else None,
        by_currency=by_currency,
    )


def _label(key: Key) -> str | int:
    """A day row's key is its date; a partner's, campaign's or link's, its id; a text
    dimension's, its value ("" for none)."""
    bucket, group_key = key
    if bucket is None:
        return group_key if isinstance(group_key, str) else int(group_key)
    return datetime.fromtimestamp(bucket / 1000, UTC).strftime("%Y-%m-%d")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def stats_report(
    session: AsyncSession,
    viewer: Viewer,
    start: datetime,
    end: datetime,
    group_by: GroupBy | None = None,
    filters: Filters | None = None,
) -> StatsReport:
    """Totals for ``[start, end)`` (hour resolution) and, with ``group_by``, one row per key;
    ``filters`` as the pages' (a source grouping takes none: a network's rows count its
    merchant's clicks, which no click filter divides)."""
    filters = filters or Filters()
    group = DIMENSIONS.get(group_by) if group_by else None
    bucket_ms = DAY_MS if group_by == "day" else None
    span = (viewer, _ms(start), _ms(end))
    if group_by == "source":
        # A merchant's clicks count under each of its sources: the totals are the plain ones.
        figures = await by_source(session, *span)
        splits = await verification(session, *span, SOURCE)
        overall = (await collect(session, *span, Filters())).get((None, None), Metrics())
        overall_splits = await verification(session, *span)
    else:
        figures = await collect(session, *span, filters, group, bucket_ms=bucket_ms)
        splits = await verification(session, *span, group, filters, bucket_ms=bucket_ms)
        overall = Metrics()
        for metrics in figures.values():
            overall.merge(metrics)
        overall_splits = splits
    overall_split: dict[str, Verification] = {}
    for split in overall_splits.values():
        for currency, counts in split.items():
            overall_split.setdefault(currency, Verification()).merge(counts)
    rows = (
        [
            StatsRow(
                key=_label(key),
                totals=_totals(figures.get(key, Metrics()), splits.get(key, {})),
            )
            for key in sorted(figures.keys() | splits.keys())
        ]
        if group_by
        else []
    )
    rows = (
        [row for row in rows if row.key != 0]  # conversions no source reported
        if group_by == "source"
        else rows
    )
    return StatsReport(
        start=start, end=end, group_by=group_by, totals=_totals(overall, overall_split), rows=rows
    )
