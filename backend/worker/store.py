"""Writing one prepared batch in one transaction, idempotently.

``INSERT ... ON CONFLICT DO NOTHING RETURNING`` tells which rows are new; the rollup is
incremented from those alone, aggregated in Python first (PostgreSQL refuses an upsert that
touches one key twice in a statement). A batch delivered twice therefore changes nothing the
second time. Core statements only: the ORM costs ten times as much per row.
On SQLite clicks and impressions skip ``RETURNING``: multi-row ``VALUES`` of tuples cost a
third as much, and the row count says whether every row was new.

The writes are synchronous Core code that ``Database.run_write`` runs in one go (on SQLite
without a thread hop per statement; on PostgreSQL through the async driver).
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import chain
from typing import Any

from sqlalchemy import Connection, Table, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from backend.core.clock import HOUR_MS
from backend.core.money import format_minor
from backend.domain.affiliate.status import COUNTED, POSTBACK, change_row
from backend.domain.events import RejectReason, Source
from backend.storage.db.engine import Database
from backend.storage.db.models import (
    Click,
    Conversion,
    ConversionChange,
    Impression,
    RejectedEventRow,
    StatsHourly,
)
from backend.storage.rollups.by_dimension import mark_for_refold
from backend.worker.enrich import (
    CLICK_COLUMNS,
    IMPRESSION_COLUMNS,
    ROLLUP_COUNTERS,
    Delta,
    Prepared,
    RollupKey,
    Row,
    Values,
    counts,
)

CLICKS: Table = Click.__table__  # type: ignore[assignment]
IMPRESSIONS: Table = Impression.__table__  # type: ignore[assignment]
CONVERSIONS: Table = Conversion.__table__  # type: ignore[assignment]
REJECTED: Table = RejectedEventRow.__table__  # type: ignore[assignment]
STATS: Table = StatsHourly.__table__  # type: ignore[assignment]
CHANGES: Table = ConversionChange.__table__  # type: ignore[assignment]
_SQLITE_MAX_VARIABLES = 900
# Rows per multi-row INSERT on SQLite: one statement (prepared once, then cached by the driver)
# binds them all and inserts them in one step, where ``executemany`` makes a step per row.
# 100 rows of 26 columns stay well under SQLite's 32,766 variables.
_ROWS_PER_INSERT = 100


@dataclass(frozen=True, slots=True)
class Written:
    clicks: int
    impressions: int
    conversions: int
    rejected: int

    def __add__(self, other: Written) -> Written:
        return Written(
            self.clicks + other.clicks,
            self.impressions + other.impressions,
            self.conversions + other.conversions,
            self.rejected + other.rejected,
        )


def _insert(connection: Connection, table: Table) -> Any:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _insert_new(connection: Connection, table: Table, key: str, rows: Sequence[Row]) -> set[str]:
    """Insert ``rows``, skipping any that already exist; return the keys actually written."""
    if not rows:
        return set()
    statement = _insert(connection, table).on_conflict_do_nothing().returning(table.c[key])
    result = connection.execute(statement, list(rows))
    return set(result.scalars().all())


class _NotAllNew(Exception):
    """Some rows of the batch are stored already: it was delivered before."""


def _insert_new_values(
    connection: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Values],
    *,
    optimistic: bool,
) -> set[str]:
    """``_insert_new`` for a table whose one unique constraint is its key, the first column."""
    if not rows:
        return set()
    if connection.dialect.name != "sqlite":
        named = [dict(zip(columns, row, strict=True)) for row in rows]
        return _insert_new(connection, table, columns[0], named)
    if optimistic:
        return _insert_all_new_sqlite(connection, table, columns, rows)
    return _insert_new_sqlite(connection, table, columns, rows)


@cache
def _sqlite_insert(table: Table, columns: tuple[str, ...], rows: int) -> str:
    """``INSERT`` of ``rows`` rows, skipping those whose key exists."""
    values = ", ".join(["(" + ", ".join("?" * len(columns)) + ")"] * rows)
    names = ", ".join(columns)
    return f"INSERT INTO {table.name} ({names}) VALUES {values} ON CONFLICT DO NOTHING"  # noqa: S608 - names are ours


def _sqlite_insert_rows(
    connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[Values]
) -> int:
    """Insert ``rows`` (tuples in ``columns`` order), ``_ROWS_PER_INSERT`` to a statement;
    return how many were new."""
    names, written = tuple(columns), 0
    whole = len(rows) - len(rows) % _ROWS_PER_INSERT
    for start in range(0, whole, _ROWS_PER_INSERT):
        values: list[Any] = []
        for row in rows[start : start + _ROWS_PER_INSERT]:
            values += row  # a third of the cost of ``chain``, which copies item by item
        written += connection.exec_driver_sql(
            _sqlite_insert(table, names, _ROWS_PER_INSERT), tuple(values)
        ).rowcount
    if whole < len(rows):
        rest = rows[whole:]
        written += connection.exec_driver_sql(_sqlite_insert(table, names, 1), rest).rowcount
    return written


def _insert_all_new_sqlite(
    connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[Values]
) -> set[str]:
    """The bulk path on SQLite when every row should be new: tuples straight to the driver (a
    third of the cost of SQLAlchemy's multi-row ``RETURNING`` insert). The row
    count tells whether all were written; raise ``_NotAllNew`` if not."""
    if _sqlite_insert_rows(connection, table, columns, rows) != len(rows):
        raise _NotAllNew
    return {row[0] for row in rows}


def _insert_new_sqlite(
    connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[Values]
) -> set[str]:
    """The bulk path on SQLite for a batch delivered before: which rows are new is found
    first, by key, inside the same ``BEGIN IMMEDIATE`` transaction; no other writer can slip
    in between, so the answer is exact."""
    key = columns[0]
    keys = [row[0] for row in rows]
    seen: set[str] = set()
    for start in range(0, len(keys), _SQLITE_MAX_VARIABLES):
        chunk = keys[start : start + _SQLITE_MAX_VARIABLES]
        marks = ",".join("?" * len(chunk))
        found = connection.exec_driver_sql(
            f"SELECT {key} FROM {table.name} WHERE {key} IN ({marks})",  # noqa: S608 - names are ours
            tuple(chunk),
        )
        seen.update(value for (value,) in found)
    fresh: list[Values] = []
    for row in rows:
        if row[0] not in seen:
            seen.add(row[0])  # a key twice in one batch is written once
            fresh.append(row)
    _sqlite_insert_rows(connection, table, columns, fresh)
    return {row[0] for row in fresh}


def _upsert_rollup(connection: Connection, deltas: Iterable[Delta]) -> None:
    """Add the deltas to ``stats_hourly``, one row per key (rows sharing a delta counted
    together)."""
    totals: dict[RollupKey, list[int]] = {}
    for delta, times in Counter(deltas).items():
        total = totals.setdefault(delta.key, [0] * len(ROLLUP_COUNTERS))
        for index, count in enumerate(delta.counts):
            total[index] += count * times
    if not totals:
        return
    rows = [
        {
            "hour_ms": hour_ms,
            "merchant_id": merchant_id,
            "link_id": link_id,
            "currency": currency,
            "partner_id": partner_id,
            "campaign_id": campaign_id,
            **dict(zip(ROLLUP_COUNTERS, total, strict=True)),
        }
        for (
            hour_ms,
            merchant_id,
            link_id,
            currency,
            partner_id,
            campaign_id,
        ), total in totals.items()
    ]
    connection.execute(_rollup_upsert(connection.dialect.name), rows)


@cache
def _rollup_upsert(dialect_name: str) -> Any:
    """Built once per dialect: building it took longer than running it."""
    statement = (postgresql if dialect_name == "postgresql" else sqlite).insert(STATS)
    return statement.on_conflict_do_update(
        index_elements=["hour_ms", "merchant_id", "link_id", "currency"],
        set_={name: STATS.c[name] + statement.excluded[name] for name in ROLLUP_COUNTERS},
    )


# What a signed postback's row puts on the unverified row of its order when they disagree.
REPLACED = (
    "click_id",
    "link_id",
    "partner_id",
    "campaign_id",
    "amount_minor",
    "commission_minor",
    "currency",
    "flags",
)
_STORED_ORDER = (
    select(
        CONVERSIONS.c.id,
        CONVERSIONS.c.event_id,
        CONVERSIONS.c.merchant_id,
        CONVERSIONS.c.at_ms,
        CONVERSIONS.c.status,
        CONVERSIONS.c.verified,
        *(CONVERSIONS.c[name] for name in REPLACED),
    )
    .where(
        CONVERSIONS.c.merchant_id == bindparam("merchant_id"),
        CONVERSIONS.c.order_id == bindparam("order_id"),
    )
    .with_for_update()
)


def _settle_by_postback(
    connection: Connection, rows: list[Row], inserted: set[str]
) -> tuple[set[str], list[Delta]]:
    """A signed postback for an order the pixel or the snippet stored unverified (queued
    before the postback was written) verifies it, and where they disagree on the click, the
    amount or the currency, the postback's figures replace the stored ones: the merchant's
    signed word beats a pixel anyone can fire. The audit trail keeps what was replaced and the
    hourly rollup moves with it. Returns the event ids of such postbacks and the rollup's
    corrections."""
    settled: set[str] = set()
    corrections: list[Delta] = []
    changes: list[dict[str, object]] = []
    repairs: set[int] = set()
    for row in rows:
        if row["source"] != Source.POSTBACK or row["event_id"] in inserted or not row["order_id"]:
            continue
        key = {"merchant_id": row["merchant_id"], "order_id": row["order_id"]}
        stored = connection.execute(_STORED_ORDER, key).mappings().first()
        if stored is None or stored["verified"] or stored["event_id"] == row["event_id"]:
            continue  # verified before (a duplicate order), or this very postback, redelivered
        values: dict[str, object] = {"verified": True}
        reason = "verified by postback"
        if any(stored[name] != row[name] for name in ("click_id", "amount_minor", "currency")):
            values |= {name: row[name] for name in REPLACED}
            reason = f"replaced by the merchant's signed postback; it was {_described(stored)}"
            if stored["status"] in COUNTED:
                corrections += [_rollup_delta(stored, stored, -1), _rollup_delta(stored, row, 1)]
            repairs.add(stored["at_ms"] // HOUR_MS * HOUR_MS)
        connection.execute(update(CONVERSIONS).where(CONVERSIONS.c.id == stored["id"]), values)
        settled.add(row["event_id"])
        status = stored["status"]
        changes.append(change_row(stored["id"], status, status, True, POSTBACK, reason))
    if changes:
        connection.execute(insert(CHANGES), changes)
    if repairs:
        mark_for_refold(connection, repairs)
    return settled, corrections


def _described(stored: Any) -> str:
    """The replaced figures of a conversion, as its audit trail keeps them."""
    currency = stored["currency"]
    click = (
        f"click {stored['click_id']} (partner #{stored['partner_id']}, link #{stored['link_id']})"
        if stored["click_id"]
        else "no click"
    )
    return (
        f"{click}, {format_minor(stored['amount_minor'], currency)} {currency}, commission "
        f"{format_minor(stored['commission_minor'], currency)}"
    )


def _rollup_delta(stored: Any, figures: Any, sign: int) -> Delta:
    """What a conversion with ``figures`` at the stored row's time adds (``sign`` 1) to, or
    takes (-1) from, ``stats_hourly``."""
    key: RollupKey = (
        stored["at_ms"] // HOUR_MS * HOUR_MS,
        stored["merchant_id"],
        figures["link_id"] or 0,
        figures["currency"],
        figures["partner_id"] or 0,
        figures["campaign_id"] or 0,
    )
    return Delta(
        key,
        counts(
            conversions=sign,
            revenue_minor=sign * figures["amount_minor"],
            commission_minor=sign * figures["commission_minor"],
        ),
    )


def _duplicate_orders(connection: Connection, rows: list[Row], inserted: set[str]) -> list[Row]:
    """Conversions refused as a repeat of an order already stored (not a redelivery)."""
    skipped = [row for row in rows if row["event_id"] not in inserted]
    if not skipped:
        return []
    stored = set(
        (
            connection.execute(
                select(CONVERSIONS.c.event_id).where(
                    CONVERSIONS.c.event_id.in_([row["event_id"] for row in skipped])
                )
            )
        ).scalars()
    )
    return [
        {
            "event_id": row["event_id"],
            "at_ms": row["at_ms"],
            "source": row["source"],
            "reason": RejectReason.DUPLICATE_ORDER.value,
            "detail": f"order {row['order_id']!r} of merchant {row['merchant_id']} exists",
            "payload": repr({k: row[k] for k in ("order_id", "amount_minor", "currency")}),
        }
        for row in skipped
        if row["event_id"] not in stored
    ]


async def write_batch(database: Database, batch: Prepared) -> Written:
    """Write ``batch`` in one transaction. Nearly always each of its rows is new, which the
    inserts alone confirm; a batch delivered again is rolled back and written the exact way."""
    try:
        return await database.run_write(_write_batch, batch, optimistic=True)
    except _NotAllNew:
        return await database.run_write(_write_batch, batch, optimistic=False)


def _write_batch(connection: Connection, batch: Prepared, *, optimistic: bool) -> Written:
    clicks = _insert_new_values(
        connection, CLICKS, CLICK_COLUMNS, batch.clicks, optimistic=optimistic
    )
    impressions = _insert_new_values(
        connection, IMPRESSIONS, IMPRESSION_COLUMNS, batch.impressions, optimistic=optimistic
    )
    conversions = _insert_new(connection, CONVERSIONS, "event_id", batch.conversions)
    confirming, corrections = _settle_by_postback(connection, batch.conversions, conversions)
    duplicates = _duplicate_orders(connection, batch.conversions, conversions | confirming)
    rejected = _insert_new(connection, REJECTED, "event_id", batch.rejected + duplicates)
    written = Written(len(clicks), len(impressions), len(conversions), len(rejected))
    deltas: Iterable[Delta] = batch.deltas.values()  # every row was new, as a rule
    if (written.clicks, written.impressions, written.conversions) != (
        len(batch.clicks),
        len(batch.impressions),
        len(batch.conversions),
    ):
        new_ids = clicks | impressions | conversions
        deltas = (delta for row_id, delta in batch.deltas.items() if row_id in new_ids)
    _upsert_rollup(connection, chain(deltas, corrections))
    return written


def poison_row(place: str, payload: bytes, detail: str) -> Row:
    """A rejected row for a stream entry or an event in one (``place``: the entry id, and
    ``/index`` for an event), idempotent by its place."""
    return {
        "event_id": f"stream:{place}"[:64],
        "at_ms": int(place.split("-")[0]),  # a stream entry id starts with its time in ms
        "source": Source.UNKNOWN.value,
        "reason": RejectReason.POISON.value,
        "detail": detail[:500].replace("\x00", "\ufffd"),
        "payload": "base64:" + base64.b64encode(payload[:3000]).decode(),
    }


async def write_poison(database: Database, rows: Sequence[Row]) -> None:
    """Dead-letter what failed too often or cannot be read (rows from ``poison_row``)."""
    await database.run_write(_insert_new, REJECTED, "event_id", rows)
