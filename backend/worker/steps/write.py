"""Write: one prepared batch in one transaction, idempotently.

``INSERT ... ON CONFLICT DO NOTHING RETURNING`` tells which rows are new; the hourly rollup is
incremented from those alone (``backend.storage.rollups.hourly``). A batch delivered twice
therefore changes nothing the second time. The outbox messages new conversions owe are added in
the same transaction (``backend.domain.affiliate.outbox``). Core statements only: the ORM costs
ten times as much per row.
Clicks and impressions, nearly always all new, skip ``RETURNING``: on SQLite multi-row
``VALUES`` of tuples cost a third as much, and the row count says whether every row was new; on
PostgreSQL they are COPYed, which fails if any was stored before. A batch that was not all new
is rolled back and written the exact way.

The writes are synchronous Core code that ``Database.run_write`` runs in one go (on SQLite
without a thread hop per statement; on PostgreSQL through the async driver).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import chain
from typing import Any

from sqlalchemy import Connection, Table, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from backend.core.clock import HOUR_MS
from backend.core.money import format_minor
from backend.domain.affiliate import converted
from backend.domain.affiliate.ledger import record_commission_change
from backend.domain.affiliate.outbox import CREATED, FIELDS, UPDATED, enqueue, targets_of
from backend.domain.affiliate.status import (
    POSTBACK,
    TransitionRefused,
    change_by_network,
    change_row,
    network_source,
)
from backend.domain.events import RejectReason, Source
from backend.domain.stores.changes import apply_store_event
from backend.domain.stores.customers import bind_customers
from backend.storage.db.bulk_copy import RowExists, copy_rows
from backend.storage.db.engine import Database
from backend.storage.db.models import (
    Click,
    Conversion,
    ConversionChange,
    ConversionStatus,
    Impression,
    RejectedEventRow,
)
from backend.storage.rollups.by_dimension import mark_for_refold
from backend.storage.rollups.hourly import Delta, add_deltas, conversion_delta
from backend.storage.rollups.measures import COUNTED
from backend.worker.batch import CLICK_COLUMNS, IMPRESSION_COLUMNS, Prepared, Row, Values

CLICKS: Table = Click.__table__  # type: ignore[assignment]
IMPRESSIONS: Table = Impression.__table__  # type: ignore[assignment]
CONVERSIONS: Table = Conversion.__table__  # type: ignore[assignment]
REJECTED: Table = RejectedEventRow.__table__  # type: ignore[assignment]
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


def insert_new(connection: Connection, table: Table, key: str, rows: Sequence[Row]) -> set[str]:
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
    """``insert_new`` for a table whose one unique constraint is its key, the first column."""
    if not rows:
        return set()
    if connection.dialect.name != "sqlite":
        if optimistic:
            return _copy_all_new(connection, table, columns, rows)
        named = [dict(zip(columns, row, strict=True)) for row in rows]
        return insert_new(connection, table, columns[0], named)
    if optimistic:
        return _insert_all_new_sqlite(connection, table, columns, rows)
    return _insert_new_sqlite(connection, table, columns, rows)


def _copy_all_new(
    connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[Values]
) -> set[str]:
    """The bulk path on PostgreSQL when every row should be new: COPY of the tuples as they are
    (with the multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` of dictionaries, the
    worker's event loop spent three times the CPU per event). A key stored already fails it;
    raise ``_NotAllNew`` then."""
    try:
        copy_rows(connection, table.name, columns, rows)
    except RowExists as error:
        raise _NotAllNew from error
    return {row[0] for row in rows}


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
    "coupon",
    "attribution",
    "commission_rule",
)
_VOUCHING = (Source.POSTBACK, Source.NETWORK)  # sources whose word beats a pixel's
_STORED_ORDER = (
    select(
        CONVERSIONS.c.id,
        CONVERSIONS.c.event_id,
        CONVERSIONS.c.merchant_id,
        CONVERSIONS.c.at_ms,
        CONVERSIONS.c.status,
        CONVERSIONS.c.verified,
        CONVERSIONS.c.source_id,
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
    signed word beats a pixel anyone can fire. The audit trail keeps what was replaced, and the
    hourly rollup and an approved conversion's ledger move with it. Returns the event ids of
    such postbacks and the rollup's corrections."""
    settled: set[str] = set()
    corrections: list[Delta] = []
    changes: list[dict[str, object]] = []
    repairs: set[int] = set()
    replaced: list[int] = []
    for row in rows:
        if row["source"] not in _VOUCHING or row["event_id"] in inserted or not row["order_id"]:
            continue
        key = {"merchant_id": row["merchant_id"], "order_id": row["order_id"]}
        stored = connection.execute(_STORED_ORDER, key).mappings().first()
        if stored is None or stored["verified"] or stored["event_id"] == row["event_id"]:
            continue  # verified before (a duplicate order), or this very postback, redelivered
        values: dict[str, object] = {"verified": True}
        network = row["source"] == Source.NETWORK
        compared = ["click_id", "amount_minor", "currency"]
        if row["coupon"]:  # a postback naming a coupon the stored order lacks differs from it
            compared.append("coupon")
        if network:  # the network vouches: the order is its source's from now on
            values |= {"source_id": row["source_id"]}
            if row["commission_reported"]:
                compared.append("commission_minor")
                values |= {"commission_reported": True}
        actor = network_source(row["source_id"]) if network else POSTBACK
        reason = f"verified by {'the network' if network else 'postback'}"
        if any(stored[name] != row[name] for name in compared):
            values |= {name: row[name] for name in REPLACED}
            whose = "the network's postback" if network else "the merchant's signed postback"
            reason = f"replaced by {whose}; it was {_described(stored)}"
            if stored["status"] in COUNTED:
                corrections += [_correction(stored, stored, -1), _correction(stored, row, 1)]
            repairs.add(stored["at_ms"] // HOUR_MS * HOUR_MS)
            replaced.append(stored["id"])
        clicks = [stored["click_id"], row["click_id"]] if stored["id"] in replaced else []
        holders = converted.holders(connection, clicks)
        connection.execute(update(CONVERSIONS).where(CONVERSIONS.c.id == stored["id"]), values)
        corrections += converted.moves(holders, converted.holders(connection, clicks))
        settled.add(row["event_id"])
        status = stored["status"]
        changes.append(change_row(stored["id"], status, status, True, actor, reason))
    if changes:
        connection.execute(insert(CHANGES), changes)
    if repairs:
        mark_for_refold(connection, repairs)
    if replaced:
        _owe_updates(connection, replaced)
        reason = "figures replaced by a signed postback"
        record_commission_change(connection, replaced, actor=POSTBACK, reason=reason)
    return settled, corrections


def _owe_updates(connection: Connection, conversion_ids: list[int]) -> None:
    """Conversions whose figures a signed postback replaced owe ``conversion.updated``."""
    stored = connection.execute(
        select(*(CONVERSIONS.c[name] for name in FIELDS)).where(
            CONVERSIONS.c.id.in_(conversion_ids)
        )
    )
    enqueue(connection, [dict(row) for row in stored.mappings()], UPDATED)


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


def _correction(stored: Any, figures: Any, sign: int) -> Delta:
    """What a conversion with ``figures`` at the stored row's time adds (``sign`` 1) to, or
    takes (-1) from, ``stats_hourly``."""
    return conversion_delta(stored["at_ms"], stored["merchant_id"], figures, sign)


def _owe_messages(connection: Connection, rows: list[Row], inserted: set[str]) -> None:
    """The outbox messages the new conversions owe (partners' postbacks, webhooks), in the
    batch's transaction: written with the rows or not at all. Nothing is read back unless an
    endpoint is listening."""
    if not inserted:
        return
    found = targets_of(connection, (row for row in rows if row["event_id"] in inserted))
    if not found:
        return
    stored = connection.execute(
        select(*(CONVERSIONS.c[name] for name in FIELDS)).where(
            CONVERSIONS.c.event_id.in_(sorted(inserted))
        )
    )
    enqueue(connection, [dict(row) for row in stored.mappings()], CREATED, found=found)


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


_NETWORK_ORDER = (
    select(
        CONVERSIONS.c.event_id,
        CONVERSIONS.c.source_id,
        *(CONVERSIONS.c[name] for name in FIELDS),
    )
    .where(
        CONVERSIONS.c.merchant_id == bindparam("merchant_id"),
        CONVERSIONS.c.order_id == bindparam("order_id"),
    )
    .with_for_update()
)


def _network_repeats(connection: Connection, rows: list[Row], written: set[str]) -> set[str]:
    """A conversion source's postbacks for orders stored from that same source (a repeat, or
    a status report): not duplicates to refuse; their status is applied by
    ``_network_statuses``. ``written``: the event ids whose rows were written or settled."""
    repeats: set[str] = set()
    for row in rows:
        if row["source"] != Source.NETWORK or row["event_id"] in written:
            continue
        key = {"merchant_id": row["merchant_id"], "order_id": row["order_id"]}
        stored = connection.execute(_NETWORK_ORDER, key).mappings().first()
        if stored is not None and (
            stored["event_id"] == row["event_id"] or stored["source_id"] == row["source_id"]
        ):
            repeats.add(row["event_id"])
    return repeats


def _network_statuses(connection: Connection, batch: Prepared, applied: set[str]) -> list[Row]:
    """The statuses conversion sources reported for their orders (``applied``: the event ids
    of the batch's postbacks that reached an order of their source), moved through the status
    rules in batch order, each with its audit row; a status already held changes nothing. The
    refused ones, as rejected rows."""
    refused: list[Row] = []
    for row in batch.conversions:
        wanted = batch.network_statuses.get(row["event_id"])
        if not wanted or row["event_id"] not in applied:
            continue
        key = {"merchant_id": row["merchant_id"], "order_id": row["order_id"]}
        stored = connection.execute(_NETWORK_ORDER, key).mappings().first()
        if stored is None:
            continue
        try:
            change_by_network(connection, stored, ConversionStatus(wanted), row["source_id"])
        except TransitionRefused as error:
            refused.append(
                {
                    "event_id": row["event_id"],
                    "at_ms": row["at_ms"],
                    "source": Source.NETWORK.value,
                    "reason": RejectReason.STATUS_REFUSED.value,
                    "detail": f"order {row['order_id']!r}: {error}",
                    "payload": repr({"order_id": row["order_id"], "status": wanted}),
                }
            )
    return refused


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
    conversions = insert_new(connection, CONVERSIONS, "event_id", batch.conversions)
    _owe_messages(connection, batch.conversions, conversions)
    bind_customers(connection, (row for row in batch.conversions if row["event_id"] in conversions))
    confirming, corrections = _settle_by_postback(connection, batch.conversions, conversions)
    repeats = _network_repeats(connection, batch.conversions, conversions | confirming)
    applied = conversions | confirming | repeats
    duplicates = _duplicate_orders(connection, batch.conversions, applied)
    rejected = insert_new(connection, REJECTED, "event_id", batch.rejected + duplicates)
    deltas: Iterable[Delta] = batch.deltas.values()  # every row was new, as a rule
    if (len(clicks), len(impressions), len(conversions)) != (
        len(batch.clicks),
        len(batch.impressions),
        len(batch.conversions),
    ):
        new_ids = clicks | impressions | conversions
        deltas = (delta for row_id, delta in batch.deltas.items() if row_id in new_ids)
    add_deltas(
        connection,
        chain(deltas, corrections, converted.written(connection, batch.conversions, conversions)),
    )
    # After the rollup has its new rows: a status change may take them out of it again.
    if batch.network_statuses:
        refused = _network_statuses(connection, batch, applied)
        rejected |= insert_new(connection, REJECTED, "event_id", refused)
    for event_id, store_event in batch.store_events.items():
        if event_id in applied:
            apply_store_event(connection, store_event)
    return Written(len(clicks), len(impressions), len(conversions), len(rejected))
