"""The report query engine: figures for a range, filters, grouping and time buckets, read from
the cheapest exact source.

- ``stats_hourly`` when only ids filter and group (totals, charts, partner/campaign/link, the
  stats API): always fresh, a few rows per hour.
- ``dimension_hourly`` below the rollup watermark plus raw rows above it, when one text
  dimension is involved (by referrer, or filtered to one sub-id) with at most a partner
  filter: exact and fresh, and a scan of raw rows for the last hour or so only.
- raw clicks and conversions otherwise (several text filters at once, or a campaign or link
  filter with a text dimension): exact, and as fast as the range is small.

What each figure counts is ``backend.storage.rollups.measures``'. Every statement passes
``Viewer.restrict``, so a partner's figures never include anyone else.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal

from sqlalchemy import Select, Table, distinct, func, literal, null, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import HOUR_MS
from backend.core.ids import click_id_floor
from backend.core.scope import Viewer
from backend.domain.affiliate.converted import eligible
from backend.domain.quality.flags import Flag
from backend.domain.reports.dimensions import Filters
from backend.storage.db.models import (
    Campaign,
    ConversionSource,
    Link,
    Partner,
    StatsHourly,
)
from backend.storage.rollups.by_dimension import CLICKS, CONVERSIONS, ROLLUP, read_watermark, spans
from backend.storage.rollups.dimensions import DIMENSIONS, Dimension
from backend.storage.rollups.measures import (
    CLICK_COUNTERS,
    COUNTERS,
    MONEY_COUNTERS,
    Metrics,
    Verification,
    click_counters,
    counted,
    money_counters,
    total,
)
from backend.storage.rollups.sql import bucket_of, or_empty, or_zero

STATS: Table = StatsHourly.__table__  # type: ignore[assignment]
Source = Literal["stats", "rollup", "raw"]
Key = tuple[int | None, Any]  # (the bucket's start, or None; the group's key, or None)


def plan(filters: Filters, group: Dimension | None) -> Source:
    texts = set(filters.texts) | ({group.name} if group and not group.is_id else set())
    if not texts:
        return "stats"
    only_partner = filters.id("campaign") is None and filters.id("link") is None
    if len(texts) == 1 and only_partner and (group is None or group.name in {"partner", *texts}):
        return "rollup"
    return "raw"


def _bucket(at_ms: Any, bucket_ms: int | None, aligned_ms: int = 1) -> Any:
    """The start of each row's bucket, or None when figures are not bucketed; a column already
    aligned to ``aligned_ms`` (a rollup's hour) is its own bucket of that size."""
    if bucket_ms is None:
        return None
    return at_ms if bucket_ms == aligned_ms else bucket_of(at_ms, bucket_ms)


def _selected(column: Any) -> Any:
    return null() if column is None else column


def _given(*columns: Any) -> list[Any]:
    return [column for column in columns if column is not None]


def _stats(
    viewer: Viewer,
    start: int,
    end: int,
    filters: Filters,
    group: Dimension | None,
    bucket_ms: int | None,
) -> Select[Any]:
    t = STATS.c
    bucket = _bucket(t.hour_ms, bucket_ms, HOUR_MS)
    key = t[group.column] if group else None
    statement = select(
        _selected(bucket),
        _selected(key),
        t.currency,
        *(total(t[name]) for name in COUNTERS),
    ).where(t.hour_ms >= start, t.hour_ms < end)
    for name, value in filters.ids.items():
        statement = statement.where(t[DIMENSIONS[name].column] == value)
    return viewer.restrict(statement.group_by(t.currency, *_given(bucket, key)), t.partner_id)


def _rollup(
    viewer: Viewer,
    start: int,
    end: int,
    filters: Filters,
    group: Dimension | None,
    bucket_ms: int | None,
    span_hours: int,
) -> Select[Any]:
    t = ROLLUP.c
    (text,) = set(filters.texts) | ({group.name} if group and not group.is_id else set())
    bucket = _bucket(t.hour_ms, bucket_ms, HOUR_MS)
    key = (t.value if not group.is_id else t.partner_id) if group else None
    statement = select(
        _selected(bucket),
        _selected(key),
        t.currency,
        *(literal(0) if name == "impressions" else total(t[name]) for name in COUNTERS),
    ).where(t.dimension == text, t.span_hours == span_hours, t.hour_ms >= start, t.hour_ms < end)
    if text in filters.texts:
        statement = statement.where(t.value == filters.texts[text])
    if (partner := filters.id("partner")) is not None:
        statement = statement.where(t.partner_id == partner)
    return viewer.restrict(statement.group_by(t.currency, *_given(bucket, key)), t.partner_id)


def _raw_clicks(
    viewer: Viewer,
    start: int,
    end: int,
    filters: Filters,
    group: Dimension | None,
    bucket_ms: int | None,
) -> Select[Any]:
    c = CLICKS.c
    bucket = _bucket(c.at_ms, bucket_ms)
    key = c[group.column] if group else None
    statement = select(
        _selected(bucket),
        _selected(key),
        literal(""),
        *click_counters(c),
        literal(0),
        *(literal(0) for _ in MONEY_COUNTERS),
    ).where(c.click_id >= click_id_floor(start), c.click_id < click_id_floor(end))
    for name, value in {**filters.ids, **filters.texts}.items():
        statement = statement.where(c[DIMENSIONS[name].column] == value)
    if grouping := _given(bucket, key):
        statement = statement.group_by(*grouping)
    return viewer.restrict(statement, c.partner_id)


def _raw_conversions(
    viewer: Viewer,
    start: int,
    end: int,
    filters: Filters,
    group: Dimension | None,
    bucket_ms: int | None,
) -> Select[Any]:
    v, c = CONVERSIONS.c, CLICKS.c
    bucket = _bucket(v.at_ms, bucket_ms)
    if group is None:
        key: Any = None
    elif group.is_id:
        key = or_zero(v[group.column])
    else:
        key = or_empty(c[group.column])
    statement = (
        select(
            _selected(bucket),
            _selected(key),
            v.currency,
            *(literal(0) for _ in CLICK_COUNTERS),
            literal(0),
            *money_counters(v),
        )
        .select_from(CONVERSIONS.outerjoin(CLICKS, c.click_id == v.click_id))
        .where(
            v.at_ms >= start,
            v.at_ms < end,
            counted(v),
        )
    )
    for name, value in filters.ids.items():
        statement = statement.where(v[DIMENSIONS[name].column] == value)
    for name, text in filters.texts.items():
        statement = statement.where(c[DIMENSIONS[name].column] == text)
    return viewer.restrict(statement.group_by(v.currency, *_given(bucket, key)), v.partner_id)


async def collect(
    session: AsyncSession,
    viewer: Viewer,
    start_ms: int,
    end_ms: int,
    filters: Filters,
    group: Dimension | None = None,
    *,
    bucket_ms: int | None = None,
) -> dict[Key, Metrics]:
    """Figures for ``[start_ms, end_ms)`` (whole hours) by (bucket start or None, group key or
    None); ``bucket_ms``: ``HOUR_MS`` or ``DAY_MS`` (UTC days), or None for the whole range."""
    args = (viewer, start_ms, end_ms, filters, group, bucket_ms)
    statements: list[Select[Any]] = []
    source = plan(filters, group)
    if source == "stats":
        statements.append(_stats(*args))
    else:
        tail = start_ms
        if source == "rollup":
            watermark = await read_watermark(session) or start_ms
            tail = max(start_ms, min(end_ms, watermark))
            if tail > start_ms:
                hourly = bucket_ms == HOUR_MS
                pieces = [(start_ms, tail, 1)] if hourly else spans(start_ms, tail)
                for piece_start, piece_end, span_hours in pieces:
                    piece = (viewer, piece_start, piece_end, filters, group, bucket_ms)
                    statements.append(_rollup(*piece, span_hours))
        if end_ms > tail:
            fresh = (viewer, tail, end_ms, filters, group, bucket_ms)
            statements += [_raw_clicks(*fresh), _raw_conversions(*fresh)]
    result: dict[Key, Metrics] = defaultdict(Metrics)
    for statement in statements:
        for bucket, key, currency, *values in (await session.execute(statement)).all():
            result[(bucket, key)].add(currency, tuple(int(value) for value in values))
    return dict(result)


async def unattributed(
    session: AsyncSession,
    viewer: Viewer,
    start_ms: int,
    end_ms: int,
    filters: Filters,
    *,
    bucket_ms: int | None = None,
) -> dict[int | None, Metrics]:
    """The shop's own sales that no partner brought, by bucket start (or None): counted apart
    from the programme's results. Any filter or a partner's view leaves none: they have no
    partner, campaign, link or click to match."""
    if filters.ids or filters.texts or not viewer.is_admin:
        return {}
    # The hourly stats' own query, kept to the rows of no partner (0).
    statement = _stats(viewer, start_ms, end_ms, filters, None, bucket_ms)
    result: dict[int | None, Metrics] = defaultdict(Metrics)
    for start, _, currency, *values in (
        await session.execute(statement.where(STATS.c.partner_id == 0))
    ).all():
        result[start].add(currency, tuple(int(value) for value in values))
    return dict(result)


async def opted_out_sales(
    session: AsyncSession, viewer: Viewer, start_ms: int, end_ms: int, filters: Filters
) -> int:
    """How many of the shop's own counted sales came from buyers who asked not to be tracked
    (``Flag.OPTED_OUT``): known only by that note, with no identifier. None under a filter or
    for a partner, as ``unattributed``."""
    if filters.ids or filters.texts or not viewer.is_admin:
        return 0
    v = CONVERSIONS.c
    statement = select(func.count()).where(
        v.at_ms >= start_ms,
        v.at_ms < end_ms,
        v.partner_id.is_(None),
        counted(v),
        v.flags.contains(Flag.OPTED_OUT.value),
    )
    return int(await session.scalar(statement) or 0)


async def converted_clicks(
    session: AsyncSession, viewer: Viewer, start_ms: int, end_ms: int, filters: Filters
) -> int:
    """How many billable clicks made in ``[start_ms, end_ms)`` (whole hours) led to a counted
    conversion (whenever it came): the conversion rate's numerator, never more than the clicks.
    A sale crediting a bot's or a flagged click does not count (such clicks are not billable).
    Summed from ``stats_hourly`` (``backend.domain.affiliate.converted``); under a text filter,
    counted from the conversions and their clicks."""
    if not filters.texts:
        t = STATS.c
        summed = select(total(t.converted_clicks)).where(t.hour_ms >= start_ms, t.hour_ms < end_ms)
        for name, value in filters.ids.items():
            summed = summed.where(t[DIMENSIONS[name].column] == value)
        return int(await session.scalar(viewer.restrict(summed, t.partner_id)) or 0)
    v, c = CONVERSIONS.c, CLICKS.c
    statement = (
        select(func.count(distinct(v.click_id)))
        .join_from(CONVERSIONS, CLICKS, c.click_id == v.click_id)
        .where(
            v.click_id >= click_id_floor(start_ms),
            v.click_id < click_id_floor(end_ms),
            v.at_ms >= start_ms,  # a sale comes after its click: the index on at_ms narrows
            eligible(v),
        )
    )
    for name, value in filters.ids.items():
        statement = statement.where(v[DIMENSIONS[name].column] == value)
    for name, text in filters.texts.items():
        statement = statement.where(c[DIMENSIONS[name].column] == text)
    return int(await session.scalar(viewer.restrict(statement, v.partner_id)) or 0)


async def verification(
    session: AsyncSession,
    viewer: Viewer,
    start_ms: int,
    end_ms: int,
    group: Dimension | None = None,
    filters: Filters | None = None,
    *,
    bucket_ms: int | None = None,
) -> dict[Key, dict[str, Verification]]:
    """Counted conversions by verification, keyed as ``collect``'s figures, then by currency.
    The rollups have no such dimension: this is counted from the conversions themselves (which
    are never purged), under the click's values for a text dimension or filter (the clicks'
    retention bounds those, as it bounds the raw-row reports)."""
    v, c = CONVERSIONS.c, CLICKS.c
    filters = filters or Filters()
    bucket = _bucket(v.at_ms, bucket_ms)
    if group is None:
        key: Any = None
    else:
        key = or_zero(v[group.column]) if group.is_id else or_empty(c[group.column])
    statement = (
        select(
            _selected(bucket),
            _selected(key),
            v.currency,
            v.verified,
            *money_counters(v)[:2],  # conversions, revenue_minor
        )
        .where(v.at_ms >= start_ms, v.at_ms < end_ms, counted(v))
        .group_by(*_given(bucket, key), v.currency, v.verified)
    )
    if filters.texts or (group is not None and not group.is_id):
        statement = statement.select_from(CONVERSIONS.outerjoin(CLICKS, c.click_id == v.click_id))
    for name, value in filters.ids.items():
        statement = statement.where(v[DIMENSIONS[name].column] == value)
    for name, text in filters.texts.items():
        statement = statement.where(c[DIMENSIONS[name].column] == text)
    result: dict[Key, dict[str, Verification]] = defaultdict(dict)
    for row_bucket, row_key, currency, verified, conversions, revenue in (
        await session.execute(viewer.restrict(statement, v.partner_id))
    ).all():
        split = result[(row_bucket, row_key)].setdefault(currency, Verification())
        split.add(bool(verified), int(conversions), int(revenue))
    return dict(result)


SOURCE = Dimension("source", "Network", "source_id", is_id=True)
"""The conversion source (network) that reported a conversion: a column of conversions only."""


async def by_source(
    session: AsyncSession,
    viewer: Viewer,
    start_ms: int,
    end_ms: int,
    *,
    bucket_ms: int | None = None,
) -> dict[Key, Metrics]:
    """Figures per conversion source, keyed as ``collect``'s: the conversions each reported
    (money and counts from the conversions themselves, by the measures' definitions), and as its
    traffic the clicks of its merchant's links from ``stats_hourly`` (the clicks sent towards
    the network; a merchant's clicks count under each of its sources)."""
    v = CONVERSIONS.c
    bucket = _bucket(v.at_ms, bucket_ms)
    money = (
        select(
            _selected(bucket),
            v.source_id,
            v.currency,
            *(literal(0) for _ in CLICK_COUNTERS),
            literal(0),
            *money_counters(v),
        )
        .where(
            v.at_ms >= start_ms,
            v.at_ms < end_ms,
            v.source_id.is_not(None),
            counted(v),
        )
        .group_by(v.currency, v.source_id, *_given(bucket))
    )
    result: dict[Key, Metrics] = defaultdict(Metrics)
    for row_bucket, key, currency, *values in (
        await session.execute(viewer.restrict(money, v.partner_id))
    ).all():
        result[(row_bucket, key)].add(currency, tuple(int(value) for value in values))
    sources: dict[int, list[int]] = defaultdict(list)
    for source_id, merchant_id in await session.execute(
        select(ConversionSource.id, ConversionSource.merchant_id)
    ):
        sources[merchant_id].append(source_id)
    if not sources:
        return dict(result)
    t = STATS.c
    hour_bucket = _bucket(t.hour_ms, bucket_ms, HOUR_MS)
    clicks = (
        select(_selected(hour_bucket), t.merchant_id, *(total(t[n]) for n in CLICK_COUNTERS))
        .where(t.hour_ms >= start_ms, t.hour_ms < end_ms, t.merchant_id.in_(list(sources)))
        .group_by(t.merchant_id, *_given(hour_bucket))
    )
    for row_bucket, merchant_id, *values in (
        await session.execute(viewer.restrict(clicks, t.partner_id))
    ).all():
        traffic = (*(int(value) for value in values), 0, 0, 0, 0)
        for source_id in sources[merchant_id]:
            result[(row_bucket, source_id)].add("", traffic)
    return dict(result)


_NAMED: dict[str, tuple[Any, Any]] = {
    "source": (ConversionSource.id, ConversionSource.name),
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
