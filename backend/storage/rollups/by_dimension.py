"""The dimension rollup: closed hours of raw clicks and conversions folded into
``dimension_hourly`` by a cron job, outside the worker's hot path.

Each run folds whole hours from the stored watermark up to the last hour closed for
``GRACE_MS`` and moves the watermark in the same transaction, so an hour is folded exactly
once. Only counted conversions are folded (``COUNTED``), so reports read the rows as they are;
a conversion taken out of the counted set after its hour was folded (rejected, reversed) is
taken out of the rows it was folded into by ``uncount_folded``, and a person's approval that
changes its commission corrects them by ``correct_commission``, each in the transaction that
changed it, taking turns with the fold on the watermark row's lock.
An event written for an hour already folded (a late spool replay) is not in the rollup: the
grace period is there to make that rare. A conversion whose figures changed after its hour may
have been folded (a signed postback replacing a pixel's attribution or amount) marks its hour
in ``rollup_repairs``, in the transaction that changed it; the next run folds that hour's
conversions, and its day's, again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, Table, and_, delete, func, insert, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from backend.core.clock import DAY_MS, HOUR_MS, MINUTE_MS, now_ms
from backend.core.ids import click_id_floor
from backend.storage.db.engine import Database
from backend.storage.db.models import (
    Click,
    Conversion,
    DimensionHourly,
    RollupRepair,
    RollupWatermark,
)
from backend.storage.rollups.dimensions import TEXT_DIMENSIONS
from backend.storage.rollups.measures import (
    CLICK_COUNTERS,
    MONEY_COUNTERS,
    click_counters,
    counted,
    money_counters,
)
from backend.storage.rollups.sql import hour_of, or_empty, or_zero

log = logging.getLogger(__name__)
WATERMARK = "dimension_hourly"
GRACE_MS = 5 * MINUTE_MS
HOURS_PER_TRANSACTION = 24
ROLLUP: Table = DimensionHourly.__table__  # type: ignore[assignment]
CLICKS: Table = Click.__table__  # type: ignore[assignment]
CONVERSIONS: Table = Conversion.__table__  # type: ignore[assignment]
REPAIRS: Table = RollupRepair.__table__  # type: ignore[assignment]
COUNTER_COLUMNS = [*CLICK_COUNTERS, *MONEY_COUNTERS]  # stats_hourly's but impressions
COLUMNS = [
    "hour_ms",
    "span_hours",
    "dimension",
    "value",
    "partner_id",
    "currency",
    *COUNTER_COLUMNS,
]


_WATERMARK = select(RollupWatermark.hour_ms).where(RollupWatermark.name == WATERMARK)


async def read_watermark(
    session: AsyncSession | AsyncConnection, *, lock: bool = False
) -> int | None:
    """Every hour before this one (epoch ms) is in the rollup; None before the first fold.
    ``lock``: until the transaction ends (a writer that folds, or corrects folded rows)."""
    hour: int | None = await session.scalar(_WATERMARK.with_for_update() if lock else _WATERMARK)
    return hour


async def _first_hour_of(connection: AsyncConnection) -> int | None:
    first_click = await connection.scalar(
        select(CLICKS.c.at_ms).order_by(CLICKS.c.click_id).limit(1)
    )
    first_conversion = await connection.scalar(select(func.min(CONVERSIONS.c.at_ms)))
    firsts = [int(at) for at in (first_click, first_conversion) if at is not None]
    return min(firsts) // HOUR_MS * HOUR_MS if firsts else None


async def _fold(connection: AsyncConnection, start_ms: int, end_ms: int) -> None:
    await _fold_clicks(connection, start_ms, end_ms)
    await _fold_conversions(connection, start_ms, end_ms)


async def _fold_clicks(connection: AsyncConnection, start_ms: int, end_ms: int) -> None:
    clicks = CLICKS.c
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
                *(literal(0) for _ in MONEY_COUNTERS),
            )
            .where(
                clicks.click_id >= click_id_floor(start_ms),
                clicks.click_id < click_id_floor(end_ms),
            )
            .group_by(hour_of(clicks.at_ms), value, clicks.partner_id)
        )
        await connection.execute(insert(ROLLUP).from_select(COLUMNS, click_rows))


async def _fold_conversions(connection: AsyncConnection, start_ms: int, end_ms: int) -> None:
    """Conversions count under the dimension values of the click they credit."""
    clicks = CLICKS.c
    conversions = CONVERSIONS.c
    for dimension in TEXT_DIMENSIONS:
        value = clicks[dimension.column]
        conversion_rows = (
            select(
                hour_of(conversions.at_ms),
                literal(1),
                literal(dimension.name),
                or_empty(value),
                or_zero(conversions.partner_id),
                conversions.currency,
                *(literal(0) for _ in CLICK_COUNTERS),
                *money_counters(conversions, exact=False),
            )
            .select_from(CONVERSIONS.outerjoin(CLICKS, clicks.click_id == conversions.click_id))
            .where(conversions.at_ms >= start_ms, conversions.at_ms < end_ms, counted(conversions))
            .group_by(
                hour_of(conversions.at_ms),
                or_empty(value),
                or_zero(conversions.partner_id),
                conversions.currency,
            )
        )
        await connection.execute(insert(ROLLUP).from_select(COLUMNS, conversion_rows))


async def _fold_days(connection: AsyncConnection, start_ms: int, end_ms: int) -> None:
    """Day rows for every UTC day whose last hour was folded in ``[start_ms, end_ms)``."""
    first_day = start_ms // DAY_MS * DAY_MS
    for day in range(first_day, end_ms, DAY_MS):
        if start_ms < day + DAY_MS <= end_ms:
            await _fold_day(connection, day)


async def _fold_day(connection: AsyncConnection, day: int, money_only: bool = False) -> None:
    """The day row of ``day`` from its hour rows (of money alone with ``money_only``)."""
    t = ROLLUP.c
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
    if money_only:
        rows = rows.where(t.currency != "")
    await connection.execute(insert(ROLLUP).from_select(COLUMNS, rows))


def mark_for_refold(connection: Connection, hours: Iterable[int]) -> None:
    """Have the fold job fold these hours' conversions again; called in the transaction that
    changed them."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(REPAIRS).on_conflict_do_nothing()
    connection.execute(statement, [{"hour_ms": hour} for hour in hours])


async def _refold_repairs(connection: AsyncConnection) -> int:
    """Fold again the conversions of the hours marked for it that were folded already, and of
    their days; the marks are taken first, so a change made meanwhile marks its hour anew. The
    watermark's lock keeps a status change from correcting rows while they are folded again."""
    watermark = await read_watermark(connection, lock=True)
    taken = list((await connection.execute(delete(REPAIRS).returning(REPAIRS.c.hour_ms))).scalars())
    if watermark is None or not taken:
        return 0
    # Hours whose clicks retention purged keep their rows: folded again, their conversions
    # would lose the dimension values of the clicks they credit.
    oldest = await connection.scalar(select(CLICKS.c.at_ms).order_by(CLICKS.c.click_id).limit(1))
    kept_from = 0 if oldest is None else oldest // HOUR_MS * HOUR_MS
    hours = [hour for hour in taken if kept_from <= hour < watermark]
    t = ROLLUP.c
    money = t.currency != ""
    for hour in hours:
        await connection.execute(delete(ROLLUP).where(t.span_hours == 1, t.hour_ms == hour, money))
        await _fold_conversions(connection, hour, hour + HOUR_MS)
    for day in sorted({hour // DAY_MS * DAY_MS for hour in hours}):
        if day + DAY_MS <= watermark:
            await connection.execute(
                delete(ROLLUP).where(t.span_hours == 24, t.hour_ms == day, money)
            )
            await _fold_day(connection, day, money_only=True)
    return len(hours)


async def correct_commission(session: AsyncSession, conversion: Conversion, delta: int) -> None:
    """Add ``delta`` to the commission of the rows ``conversion`` was folded into."""
    figures = {name: getattr(conversion, name) for name in _FOLDED_BY}
    changes = {"commission_minor": delta}
    await session.run_sync(lambda sync: _move_folded(sync.connection(), figures, changes))


def uncount_folded(connection: Connection, conversion: Mapping[str, Any]) -> None:
    """Take a conversion that is no longer counted (rejected, reversed) out of the rows it was
    folded into; ``conversion``: its row's ``at_ms``, ``click_id``, ``partner_id``,
    ``currency``, ``amount_minor`` and ``commission_minor`` (as they were counted)."""
    changes = {
        "conversions": -1,
        "revenue_minor": -conversion["amount_minor"],
        "commission_minor": -conversion["commission_minor"],
    }
    _move_folded(connection, conversion, changes)


_FOLDED_BY = ("at_ms", "click_id", "partner_id", "currency", "amount_minor", "commission_minor")


def _move_folded(
    connection: Connection, conversion: Mapping[str, Any], changes: Mapping[str, int]
) -> None:
    """Add ``changes`` (counter: delta) to the rows ``conversion`` was folded into (its hour's
    and, once folded, its day's, under each dimension value of its click); nothing while its
    hour is not folded (the fold will read the row as it is by then).

    A click purged since the fold (after ``RETENTION_DAYS``) no longer says under which values
    the conversion was folded: it is then corrected under the empty values, as a conversion
    without a click is folded.
    """
    watermark = connection.scalar(_WATERMARK.with_for_update())
    if watermark is None or conversion["at_ms"] >= watermark:
        return
    click = None
    if conversion["click_id"]:
        columns = [CLICKS.c[dimension.column] for dimension in TEXT_DIMENSIONS]
        click = connection.execute(
            select(*columns).where(CLICKS.c.click_id == conversion["click_id"])
        ).first()
    values = tuple(click) if click is not None else ("",) * len(TEXT_DIMENSIONS)
    hour = conversion["at_ms"] // HOUR_MS * HOUR_MS
    t = ROLLUP.c
    connection.execute(
        update(ROLLUP)
        .where(
            t.partner_id == (conversion["partner_id"] or 0),
            t.currency == conversion["currency"],
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
        .values({name: t[name] + delta for name, delta in changes.items()})
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
    async with database.writing() as connection:
        if refolded := await _refold_repairs(connection):
            log.info("dimension rollup folded the conversions of %d hours again", refolded)
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
