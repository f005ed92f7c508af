"""Deleting raw events: on schedule (``RETENTION_DAYS``) and on request (erasure).

Raw clicks, impressions and rejected events go, and the outbox's finished messages (delivered or
failed) with their attempts, finished mails (they hold addresses) and e-mailed tokens long
expired; the hourly rollups stay, so totals survive.
Conversions are financial records (commission owed or paid) and are kept: they hold no visitor
hash and no network prefix. Deletes run in bounded batches so the writer lock is never held
for long. On PostgreSQL a time bound first drops the whole monthly partitions before it
(``backend.storage.db.partitions``); row deletes then only touch the month it falls in and the
DEFAULT partition.

Deleted must mean unreadable on disk too: SQLite zeroes deleted rows (``secure_delete``) but
its write-ahead log still holds their pages until it is checkpointed and truncated, and Redis's
append-only file still holds the events' stream entries until it is rewritten.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import ColumnElement, delete, select

from backend.core import clock
from backend.core.ids import click_id_floor, event_id_floor
from backend.storage.db.engine import Database
from backend.storage.db.models import (
    AccountToken,
    DeliveryAttempt,
    DeliveryStatus,
    MailMessage,
    OutboxMessage,
)
from backend.storage.db.partitions import drop_partitions_before
from backend.storage.erasure import rewrite_append_only_file
from backend.worker.steps.write import CLICKS, IMPRESSIONS, REJECTED

PURGE_BATCH = 5_000
log = logging.getLogger(__name__)


async def purge_expired(
    database: Database, redis: Redis, retention_days: int, now_ms: int | None = None
) -> int:
    """Delete what is due; return the number of rows deleted."""
    cutoff_ms = (clock.now_ms() if now_ms is None else now_ms) - retention_days * clock.DAY_MS
    deleted = await purge(database, redis, before_ms=cutoff_ms)
    return sum(deleted.values())


async def purge(
    database: Database,
    redis: Redis,
    *,
    partner_id: int | None = None,
    before_ms: int | None = None,
) -> dict[str, int]:
    """Delete raw events of one partner and/or before a time, from the database and from the
    files behind it and Redis; return rows deleted per table.

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
        targets += _finished_messages(before_ms)
        targets += _finished_mail(before_ms)
    deleted = {
        name: dropped.get(name, 0) + await _delete_batches(database, key, conditions)
        for name, key, conditions in targets
    }
    if not await database.truncate_wal():
        log.warning("readers kept SQLite's write-ahead log from being emptied after the purge")
    if not await rewrite_append_only_file(redis):
        log.warning("Redis's append-only file was not rewritten after the purge")
    return deleted


def _finished_messages(before_ms: int) -> list[tuple[str, Any, list[ColumnElement[bool]]]]:
    """Outbox messages delivered or failed that were made before ``before_ms``, and their
    attempts (first: they name the messages); pending ones stay until they are done."""
    done = select(OutboxMessage.id).where(
        OutboxMessage.status != DeliveryStatus.PENDING, OutboxMessage.created_ms < before_ms
    )
    return [
        (
            "delivery_attempts",
            DeliveryAttempt.__table__.c.id,
            [DeliveryAttempt.outbox_id.in_(done)],
        ),
        (
            "outbox",
            OutboxMessage.__table__.c.id,
            [
                OutboxMessage.__table__.c.status != DeliveryStatus.PENDING,
                OutboxMessage.__table__.c.created_ms < before_ms,
            ],
        ),
    ]


def _finished_mail(before_ms: int) -> list[tuple[str, Any, list[ColumnElement[bool]]]]:
    """Mails sent or failed before ``before_ms``, and tokens that expired before it."""
    mail, tokens = MailMessage.__table__.c, AccountToken.__table__.c
    return [
        (
            "mail_outbox",
            mail.id,
            [mail.status != DeliveryStatus.PENDING, mail.created_ms < before_ms],
        ),
        ("account_tokens", tokens.id, [tokens.expires_ms < before_ms]),
    ]


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
