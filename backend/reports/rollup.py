"""The dimension rollup: closed hours of raw clicks and conversions folded into
``dimension_hourly`` by a cron job, outside the worker's hot path.

Each run folds whole hours from the stored watermark up to the last hour closed for
``GRACE_MS`` and moves the watermark in the same transaction, so an hour is folded exactly
once. Conversions are folded whatever their status; reports subtract the few that are no
longer counted (rejected, reversed) at read time, so a later status change needs no repair. A
person's approval may change a conversion's commission: ``correct_commission`` corrects the rows it
was folded into, taking turns with the fold on the watermark row's lock.
An event written for an hour already folded (a late spool replay) is not in the rollup: the
grace period is there to make that rare.
"""

from __future__ import annotations

import logging

from sqlalchemy import Table, and_, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from backend.db.engine import Database
from backend.db.models import Click, Conversion, DimensionHourly, RollupWatermark
from backend.ids import click_id_floor, now_ms
from backend.reports.dimensions import TEXT_DIMENSIONS
from backend.reports.sql import (
    HOUR_MS,
    click_counters,
    hour_of,
    money_counters,
    or_empty,
    or_zero,
)

log = logging.getLogger(__name__)
WATERMARK = "dimension_hourly"
GRACE_MS = 5 * 60_000
HOURS_PER_TRANSACTION = 24
ROLLUP: Table = DimensionHourly.__table__  # type: ignore[assignment]
CLICKS: Table = Click.__table__  # type: ignore[assignment]
CONVERSIONS: Table = Conversion.__table__  # type: ignore[assignment]
COUNTER_COLUMNS = [
    "clicks",
    "unique_clicks",
    "bot_clicks",
    "flagged_clicks",
    "conversions",
    "revenue_minor",
    "commission_minor",
]
COLUMNS = [
    "hour_ms",
    "span_hours",
    "dimension",
    "value",
    "partner_id",
    "currency",
    *COUNTER_COLUMNS,
]
DAY_MS = 24 * HOUR_MS


async def read_watermark(
    session: AsyncSession | AsyncConnection, *, lock: bool = False
) -> int | None:
    """Every hour before this one (epoch ms) is in the rollup; None before the first fold.
    ``lock``: until the transaction ends (a writer that folds, or corrects folded rows)."""
    statement = select(RollupWatermark.hour_ms).where(RollupWatermark.name == WATERMARK)
    hour: int | None = await session.scalar(statement.with_for_update() if lock else statement)
    return hour


async def _first_hour_of(connection: AsyncConnection) -> int | None:
    first_click = await connection.scalar(
        select(CLICKS.c.at_ms).order_by(CLICKS.c.click_id).limit(1)
    )
    first_conversion = await connection.scalar(select(func.min(CONVERSIONS.c.at_ms)))
    firsts = [int(at) for at in (first_click, first_conversion) if at is not None]
    return min(firsts) // HOUR_MS * HOUR_MS if firsts else None


async def _fold(connection: AsyncConnection, start_ms: int, end_ms: int) -> None:
    clicks = CLICKS.c
    conversions = CONVERSIONS.c
    for dimension in TEXT_DIMENSIONS:
        value = clicks[dimension.column]
        click_rows = (
            select(
                hour_of(clicks.at_ms),
                literal(1),
                literal(dimension.name),
                value,
                clicks.partner_id,
                literal(""),
                *click_counters(clicks),
                literal(0),
                literal(0),
                literal(0),
            )
            .where(
                clicks.click_id >= click_id_floor(start_ms),
                clicks.click_id < click_id_floor(end_ms),
            )
            .group_by(hour_of(clicks.at_ms), value, clicks.partner_id)
        )
        conversion_rows = (
            select(
                hour_of(conversions.at_ms),
                literal(1),
                literal(dimension.name),
                or_empty(value),
                or_zero(conversions.partner_id),
                conversions.currency,
                literal(0),
                literal(0),
                literal(0),
                literal(0),
                *money_counters(conversions),
            )
            .select_from(CONVERSIONS.outerjoin(CLICKS, clicks.click_id == conversions.click_id))
            .where(conversions.at_ms >= start_ms, conversions.at_ms < end_ms)
            .group_by(
                hour_of(conversions.at_ms),
                or_empty(value),
                or_zero(conversions.partner_id),
                conversions.currency,
            )
        )
        for rows in (click_rows, conversion_rows):
            await connection.execute(insert(ROLLUP).from_select(COLUMNS, rows))


async def _fold_days(connection: AsyncConnection, start_ms: int, end_ms: int) -> None:
    """Day rows for every UTC day whose last hour was folded in ``[start_ms, end_ms)``."""
    t = ROLLUP.c
    first_day = start_ms // DAY_MS * DAY_MS
    for day in range(first_day, end_ms, DAY_MS):
        if not start_ms < day + DAY_MS <= end_ms:
            continue
        rows = (
            select(
                literal(day),
                literal(24),
                t.dimension,
                t.value,
                t.partner_id,
                t.currency,
                *(func.sum(t[name]) for name in COUNTER_COLUMNS),
            )
            .where(t.span_hours == 1, t.hour_ms >= day, t.hour_ms < day + DAY_MS)
            .group_by(t.dimension, t.value, t.partner_id, t.currency)
        )
        await connection.execute(insert(ROLLUP).from_select(COLUMNS, rows))


async def correct_commission(session: AsyncSession, conversion: Conversion, delta: int) -> None:
    """Add ``delta`` to the commission of the rows ``conversion`` was folded into (its hour's
    and, once folded, its day's, under each dimension value of its click); nothing while its
    hour is not folded (the fold will read the row as it is by then).

    A click purged since the fold (after ``RETENTION_DAYS``) no longer says under which values
    the conversion was folded: its commission is then corrected under the empty values, as a
    conversion without a click is folded.
    """
    watermark = await read_watermark(session, lock=True)
    if watermark is None or conversion.at_ms >= watermark:
        return
    click = None
    if conversion.click_id:
        columns = [CLICKS.c[dimension.column] for dimension in TEXT_DIMENSIONS]
        click = (
            await session.execute(select(*columns).where(CLICKS.c.click_id == conversion.click_id))
        ).first()
    values = tuple(click) if click is not None else ("",) * len(TEXT_DIMENSIONS)
    hour = conversion.at_ms // HOUR_MS * HOUR_MS
    t = ROLLUP.c
    await session.execute(
        update(ROLLUP)
        .where(
            t.partner_id == (conversion.partner_id or 0),
            t.currency == conversion.currency,
            or_(
                and_(t.span_hours == 1, t.hour_ms == hour),
                and_(t.span_hours == 24, t.hour_ms == hour // DAY_MS * DAY_MS),
            ),
            or_(
                *(
                    and_(t.dimension == dimension.name, t.value == value)
                    for dimension, value in zip(TEXT_DIMENSIONS, values, strict=True)
                )
            ),
        )
        .values(commission_minor=t.commission_minor + delta)
    )


def spans(start_ms: int, end_ms: int) -> list[tuple[int, int, int]]:
    """``[start, end)`` (whole hours, folded) as (start, end, span_hours) pieces: whole UTC
    days from day rows, the hours at either edge from hour rows."""
    first_day = -(-start_ms // DAY_MS) * DAY_MS
    last_day = end_ms // DAY_MS * DAY_MS
    if first_day >= last_day:
        return [(start_ms, end_ms, 1)] if end_ms > start_ms else []
    pieces = [(start_ms, first_day, 1), (first_day, last_day, 24), (last_day, end_ms, 1)]
    return [piece for piece in pieces if piece[1] > piece[0]]


async def _store_watermark(connection: AsyncConnection, hour_ms: int, existed: bool) -> None:
    table: Table = RollupWatermark.__table__  # type: ignore[assignment]
    if existed:
        await connection.execute(
            table.update().where(table.c.name == WATERMARK).values(hour_ms=hour_ms)
        )
    else:
        await connection.execute(table.insert().values(name=WATERMARK, hour_ms=hour_ms))


async def fold_closed_hours(database: Database, at_ms: int | None = None) -> int:
    """Fold every closed hour not folded yet; return how many hours were folded."""
    closed = ((now_ms() if at_ms is None else at_ms) - GRACE_MS) // HOUR_MS * HOUR_MS
    folded = 0
    while True:
        async with database.writing() as connection:
            watermark = await read_watermark(connection, lock=True)
            start = watermark if watermark is not None else await _first_hour_of(connection)
            start = closed if start is None else min(start, closed)
            end = min(start + HOURS_PER_TRANSACTION * HOUR_MS, closed)
            if end > start:
                await _fold(connection, start, end)
                await _fold_days(connection, start, end)
            if end != watermark:
                await _store_watermark(connection, end, existed=watermark is not None)
        folded += (end - start) // HOUR_MS
        if end >= closed:
            break
    if folded:
        log.info("dimension rollup folded %d hours, watermark now %d", folded, closed)
    return folded
