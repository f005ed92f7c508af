"""Retention: raw clicks, impressions and rejected events older than ``RETENTION_DAYS`` go;
the hourly rollups stay. Deletes run in bounded batches so the writer lock is never held long.
"""

from __future__ import annotations

import time

from sqlalchemy import delete, select

from backend.db.engine import Database
from backend.ids import click_id_floor
from backend.worker.store import CLICKS, IMPRESSIONS, REJECTED

PURGE_BATCH = 5_000


async def purge_expired(database: Database, retention_days: int, now_ms: int | None = None) -> int:
    """Delete what is due; return the number of rows deleted."""
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    cutoff_ms = now_ms - retention_days * 86_400_000
    targets = (
        (CLICKS.c.click_id, click_id_floor(cutoff_ms)),
        (IMPRESSIONS.c.event_id, cutoff_ms.to_bytes(6, "big").hex()),
    )
    deleted = 0
    for column, floor in targets:
        deleted += await _delete_batches(database, column, column < floor)
    deleted += await _delete_batches(database, REJECTED.c.id, REJECTED.c.at_ms < cutoff_ms)
    return deleted


async def _delete_batches(database: Database, key: object, condition: object) -> int:
    total = 0
    while True:
        async with database.writing() as connection:
            doomed = select(key).where(condition).limit(PURGE_BATCH).scalar_subquery()  # type: ignore[call-overload]
            table = key.table  # type: ignore[attr-defined]
            result = await connection.execute(delete(table).where(key.in_(doomed)))  # type: ignore[attr-defined]
        total += result.rowcount
        if result.rowcount < PURGE_BATCH:
            return total
