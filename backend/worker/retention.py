"""Deleting raw events: on schedule (``RETENTION_DAYS``) and on request (erasure).

Raw clicks, impressions and rejected events go; the hourly rollups stay, so totals survive.
Conversions are financial records (commission owed or paid) and are kept: they hold no visitor
hash, only the network prefix. Deletes run in bounded batches so the writer lock is never held
for long. On PostgreSQL a time bound first drops the whole monthly partitions before it
(``backend.db.partitions``); row deletes then only touch the month it falls in and the DEFAULT
partition.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, delete, select

from backend import ids
from backend.db.engine import Database
from backend.db.partitions import drop_partitions_before
from backend.ids import click_id_floor, event_id_floor
from backend.worker.store import CLICKS, IMPRESSIONS, REJECTED

PURGE_BATCH = 5_000


async def purge_expired(database: Database, retention_days: int, now_ms: int | None = None) -> int:
    """Delete what is due; return the number of rows deleted."""
    cutoff_ms = (ids.now_ms() if now_ms is None else now_ms) - retention_days * 86_400_000
    deleted = await purge(database, before_ms=cutoff_ms)
    return sum(deleted.values())


async def purge(
    database: Database, *, partner_id: int | None = None, before_ms: int | None = None
) -> dict[str, int]:
    """Delete raw events of one partner and/or before a time; return rows deleted per table.

    The time bound uses the time-ordered primary keys, so it needs no index of its own.
    """
    if partner_id is None and before_ms is None:
        raise ValueError("name a partner, a time, or both")
    dropped: dict[str, int] = {}
    if partner_id is None and before_ms is not None and database.dialect == "postgresql":
        async with database.writing() as connection:
            dropped = await connection.run_sync(drop_partitions_before, before_ms)
    targets: list[tuple[str, Any, list[ColumnElement[bool]]]] = []
    for name, table, key, floor in (
        ("clicks", CLICKS, CLICKS.c.click_id, click_id_floor),
        ("impressions", IMPRESSIONS, IMPRESSIONS.c.event_id, event_id_floor),
    ):
        conditions: list[ColumnElement[bool]] = []
        if before_ms is not None:
            conditions.append(key < floor(before_ms))
        if partner_id is not None:
            conditions.append(table.c.partner_id == partner_id)
        targets.append((name, key, conditions))
    if partner_id is None and before_ms is not None:
        targets.append(("rejected_events", REJECTED.c.id, [REJECTED.c.at_ms < before_ms]))
    return {
        name: dropped.get(name, 0) + await _delete_batches(database, key, conditions)
        for name, key, conditions in targets
    }


async def _delete_batches(
    database: Database, key: Any, conditions: list[ColumnElement[bool]]
) -> int:
    total = 0
    while True:
        doomed = select(key).where(*conditions).limit(PURGE_BATCH).scalar_subquery()
        async with database.writing() as connection:
            result = await connection.execute(delete(key.table).where(key.in_(doomed)))
        total += result.rowcount
        if result.rowcount < PURGE_BATCH:
            return total
