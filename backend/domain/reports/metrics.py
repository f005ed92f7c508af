"""Report figures for a range, filters and grouping, read from the cheapest exact source.

- ``stats_hourly`` when only ids filter and group (totals, charts, partner/campaign/link):
  always fresh, a few rows per hour.
- ``dimension_hourly`` below the rollup watermark plus raw rows above it, when one text
  dimension is involved (by referrer, or filtered to one sub-id) with at most a partner
  filter: exact and fresh, and a scan of raw rows for the last hour or so only.
- raw clicks and conversions otherwise (several text filters at once, or a campaign or link
  filter with a text dimension): exact, and as fast as the range is small.

Every statement passes ``Viewer.restrict``, so a partner's figures never include anyone else.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Select, Table, func, literal, null, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.ids import click_id_floor
from backend.core.scope import Viewer
from backend.domain.affiliate.status import COUNTED
from backend.domain.reports.dimensions import Filters
from backend.storage.db.models import Campaign, ConversionStatus, Link, Partner, StatsHourly
from backend.storage.rollups.by_dimension import CLICKS, CONVERSIONS, ROLLUP, read_watermark, spans
from backend.storage.rollups.dimensions import DIMENSIONS, Dimension
from backend.storage.rollups.sql import (
    click_counters,
    exact_sum,
    hour_of,
    money_counters,
    or_empty,
    or_zero,
)

STATS: Table = StatsHourly.__table__  # type: ignore[assignment]
COUNTERS = (
    "clicks",
    "unique_clicks",
    "bot_clicks",
    "flagged_clicks",
    "impressions",
    "conversions",
    "revenue_minor",
    "commission_minor",
)
MONEY = frozenset({"revenue_minor", "commission_minor"})
Source = Literal["stats", "rollup", "raw"]
Key = tuple[int | None, Any]


@dataclass
class Metrics:
    """Counts that add up across currencies, and money kept apart by currency."""

    clicks: int = 0
    unique_clicks: int = 0
    bot_clicks: int = 0
    flagged_clicks: int = 0
    impressions: int = 0
    conversions: int = 0
    money: dict[str, list[int]] = field(default_factory=dict)  # currency: [revenue, commission]

    def add(self, currency: str, values: tuple[int, ...], sign: int = 1) -> None:
        clicks, unique, bots, flagged, impressions, conversions, revenue, commission = values
        self.clicks += sign * clicks
        self.unique_clicks += sign * unique
        self.bot_clicks += sign * bots
        self.flagged_clicks += sign * flagged
        self.impressions += sign * impressions
        self.conversions += sign * conversions
        if conversions or revenue or commission:
            bucket = self.money.setdefault(currency, [0, 0])
            bucket[0] += sign * revenue
            bucket[1] += sign * commission

    def merge(self, other: Metrics) -> None:
        for name in ("clicks", "unique_clicks", "bot_clicks", "flagged_clicks", "impressions"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.conversions += other.conversions
        for currency, (revenue, commission) in other.money.items():
            bucket = self.money.setdefault(currency, [0, 0])
            bucket[0] += revenue
            bucket[1] += commission

    @property
    def currencies(self) -> list[str]:
        return sorted(
            code for code, (revenue, commission) in self.money.items() if revenue or commission
        )

    def revenue(self, currency: str) -> int:
        return self.money.get(currency, [0, 0])[0]

    def commission(self, currency: str) -> int:
        return self.money.get(currency, [0, 0])[1]

    @property
    def ctr(self) -> float | None:
        return self.clicks / self.impressions if self.impressions else None

    @property
    def conversion_rate(self) -> float | None:
        return self.conversions / self.clicks if self.clicks else None

    def epc(self, currency: str) -> float | None:
        """Earnings (commission) per billable click, in minor units."""
        return self.commission(currency) / self.clicks if self.clicks else None


def _sum(column: Any) -> Any:
    """The sum of a rollup column: exact for money, which a sum could take past 64 bits."""
    return exact_sum(column) if column.name in MONEY else func.coalesce(func.sum(column), 0)


def plan(filters: Filters, group: Dimension | None) -> Source:
    texts = set(filters.texts) | ({group.name} if group and not group.is_id else set())
    if not texts:
        return "stats"
    only_partner = filters.id("campaign") is None and filters.id("link") is None
    if len(texts) == 1 and only_partner and (group is None or group.name in {"partner", *texts}):
        return "rollup"
    return "raw"


def _stats(
    viewer: Viewer, start: int, end: int, filters: Filters, group: Dimension | None, by_hour: bool
) -> Select[Any]:
    t = STATS.c
    statement = select(
        t.hour_ms if by_hour else null(),
        t[group.column] if group else null(),
        t.currency,
        *(_sum(t[name]) for name in COUNTERS),
    ).where(t.hour_ms >= start, t.hour_ms < end)
    for name, value in filters.ids.items():
        statement = statement.where(t[DIMENSIONS[name].column] == value)
    grouping = [
        t.currency,
        *([t.hour_ms] if by_hour else []),
        *([t[group.column]] if group else []),
    ]
    return viewer.restrict(statement.group_by(*grouping), t.partner_id)


def _rollup(
    viewer: Viewer,
    start: int,
    end: int,
    filters: Filters,
    group: Dimension | None,
    by_hour: bool,
    span_hours: int,
) -> Select[Any]:
    t = ROLLUP.c
    (text,) = set(filters.texts) | ({group.name} if group and not group.is_id else set())
    key = (t.value if not group.is_id else t.partner_id) if group else null()
    statement = select(
        t.hour_ms if by_hour else null(),
        key,
        t.currency,
        *(_sum(t[name]) for name in COUNTERS[:4]),
        literal(0),
        *(_sum(t[name]) for name in COUNTERS[5:]),
    ).where(t.dimension == text, t.span_hours == span_hours, t.hour_ms >= start, t.hour_ms < end)
    if text in filters.texts:
        statement = statement.where(t.value == filters.texts[text])
    if (partner := filters.id("partner")) is not None:
        statement = statement.where(t.partner_id == partner)
    grouping = [t.currency, *([t.hour_ms] if by_hour else []), *([key] if group else [])]
    return viewer.restrict(statement.group_by(*grouping), t.partner_id)


def _raw_clicks(
    viewer: Viewer, start: int, end: int, filters: Filters, group: Dimension | None, by_hour: bool
) -> Select[Any]:
    c = CLICKS.c
    key = c[group.column] if group else null()
    statement = select(
        hour_of(c.at_ms) if by_hour else null(),
        key,
        literal(""),
        *click_counters(c),
        literal(0),
        literal(0),
        literal(0),
        literal(0),
    ).where(c.click_id >= click_id_floor(start), c.click_id < click_id_floor(end))
    for name, value in {**filters.ids, **filters.texts}.items():
        statement = statement.where(c[DIMENSIONS[name].column] == value)
    grouping = [*([hour_of(c.at_ms)] if by_hour else []), *([key] if group else [])]
    statement = statement.group_by(*grouping) if grouping else statement
    return viewer.restrict(statement, c.partner_id)


def _raw_conversions(
    viewer: Viewer,
    start: int,
    end: int,
    filters: Filters,
    group: Dimension | None,
    by_hour: bool,
    counted: bool,
) -> Select[Any]:
    v, c = CONVERSIONS.c, CLICKS.c
    if group is None:
        key: Any = null()
    elif group.is_id:
        key = or_zero(v[group.column])
    else:
        key = or_empty(c[group.column])
    wanted = COUNTED if counted else frozenset(ConversionStatus) - COUNTED
    statuses = sorted(status.value for status in wanted)
    statement = (
        select(
            hour_of(v.at_ms) if by_hour else null(),
            key,
            v.currency,
            literal(0),
            literal(0),
            literal(0),
            literal(0),
            literal(0),
            *money_counters(v),
        )
        .select_from(CONVERSIONS.outerjoin(CLICKS, c.click_id == v.click_id))
        .where(
            v.at_ms >= start,
            v.at_ms < end,
            v.status.in_(statuses),
        )
    )
    for name, value in filters.ids.items():
        statement = statement.where(v[DIMENSIONS[name].column] == value)
    for name, text in filters.texts.items():
        statement = statement.where(c[DIMENSIONS[name].column] == text)
    grouping = [v.currency, *([hour_of(v.at_ms)] if by_hour else []), *([key] if group else [])]
    return viewer.restrict(statement.group_by(*grouping), v.partner_id)


async def collect(
    session: AsyncSession,
    viewer: Viewer,
    start_ms: int,
    end_ms: int,
    filters: Filters,
    group: Dimension | None = None,
    *,
    by_hour: bool = False,
) -> dict[Key, Metrics]:
    """Figures for ``[start_ms, end_ms)`` (whole hours) by (hour or None, group key or None)."""
    args = (viewer, start_ms, end_ms, filters, group, by_hour)
    statements: list[tuple[Select[Any], int]] = []
    source = plan(filters, group)
    if source == "stats":
        statements.append((_stats(*args), 1))
    else:
        tail = start_ms
        if source == "rollup":
            watermark = await read_watermark(session) or start_ms
            tail = max(start_ms, min(end_ms, watermark))
            if tail > start_ms:
                pieces = [(start_ms, tail, 1)] if by_hour else spans(start_ms, tail)
                for piece_start, piece_end, span_hours in pieces:
                    piece = (viewer, piece_start, piece_end, filters, group, by_hour)
                    statements.append((_rollup(*piece, span_hours), 1))
                folded = (viewer, start_ms, tail, filters, group, by_hour)
                statements.append((_raw_conversions(*folded, counted=False), -1))
        if end_ms > tail:
            fresh = (viewer, tail, end_ms, filters, group, by_hour)
            statements += [(_raw_clicks(*fresh), 1), (_raw_conversions(*fresh, counted=True), 1)]
    result: dict[Key, Metrics] = defaultdict(Metrics)
    for statement, sign in statements:
        for hour, key, currency, *values in (await session.execute(statement)).all():
            result[(hour, key)].add(currency, tuple(int(value) for value in values), sign)
    return dict(result)


async def totals(
    session: AsyncSession, viewer: Viewer, start_ms: int, end_ms: int, filters: Filters
) -> Metrics:
    figures = await collect(session, viewer, start_ms, end_ms, filters)
    return figures.get((None, None), Metrics())


_NAMED: dict[str, tuple[Any, Any]] = {
    "partner": (Partner.id, Partner.name),
    "campaign": (Campaign.id, Campaign.name),
    "link": (Link.id, Link.code),
}


async def names(session: AsyncSession, dimension: Dimension, keys: list[Any]) -> dict[Any, str]:
    """Display names of id keys (partners, campaigns, links) that a scoped query returned."""
    if dimension.name not in _NAMED or not keys:
        return {}
    id_column, name_column = _NAMED[dimension.name]
    rows = await session.execute(select(id_column, name_column).where(id_column.in_(keys)))
    return {key: name for key, name in rows.all()}


def _object_query(name: str, value: int) -> tuple[Select[Any], Any]:
    """A query finding the object a filter names, and the partner column that scopes it
    (a campaign is a partner's when one of their links points at it)."""
    match name:
        case "partner":
            return select(Partner.id).where(Partner.id == value), Partner.id
        case "campaign":
            return (
                select(Campaign.id)
                .outerjoin(Link, Link.campaign_id == Campaign.id)
                .where(Campaign.id == value),
                Link.partner_id,
            )
        case _:
            return select(Link.id).where(Link.id == value), Link.partner_id


async def visible(session: AsyncSession, viewer: Viewer, filters: Filters) -> bool:
    """Whether every id in ``filters`` names an object the viewer may see (else: 404)."""
    for name, value in filters.ids.items():
        statement, partner_column = _object_query(name, value)
        if await session.scalar(viewer.restrict(statement.limit(1), partner_column)) is None:
            return False
    return True
