"""Migration 0011 (the outbox) on a database that already holds a programme: the new tables
take postbacks, endpoints, messages and attempts with their keys and constraints, and the
migration goes down and up again cleanly, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from alembic import command
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import IntegrityError

from backend.storage.db.engine import Database
from backend.storage.db.migrate import alembic_config, upgrade

TABLES = {"partner_postbacks", "webhook_endpoints", "outbox", "delivery_attempts"}


def _downgrade(url: str, revision: str) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    return run


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_the_outbox_tables_come_and_go(database_url: str) -> None:
    database = Database.connect(database_url)
    try:
        async with database.write_engine.begin() as connection:
            await connection.run_sync(_downgrade(database_url, "0009"))
            assert not TABLES & await connection.run_sync(_tables)
            await connection.execute(
                text(
                    "INSERT INTO partners (id, name, key, status, created_at)"
                    " VALUES (91, 'Blog', 'pk_mig', 'active', CURRENT_TIMESTAMP)"
                )
            )
        await upgrade(database, database_url)
        async with database.write_engine.begin() as connection:
            assert await connection.run_sync(_tables) >= TABLES
            await connection.execute(
                text(
                    "INSERT INTO partner_postbacks (id, partner_id, url, method, events, active,"
                    " created_at) VALUES (1, 91, 'https://t.example/pb?c={click_id}', 'GET',"
                    " '[\"conversion.created\"]', true, CURRENT_TIMESTAMP)"
                )
            )
            await connection.execute(
                text(
                    "INSERT INTO outbox (id, message_id, postback_id, event, payload, status,"
                    " attempts, next_at_ms, created_ms) VALUES (1, 'msg_1', 1,"
                    " 'conversion.created', '{}', 'pending', 0, 0, 0)"
                )
            )
            await connection.execute(
                text(
                    "INSERT INTO delivery_attempts (outbox_id, at_ms, attempt, ok, latency_ms,"
                    " detail) VALUES (1, 0, 1, false, 5, 'HTTP 500')"
                )
            )
        with pytest.raises(IntegrityError):  # a message id is unique
            async with database.write_engine.begin() as connection:
                await connection.execute(
                    text(
                        "INSERT INTO outbox (id, message_id, event, payload, status, attempts,"
                        " next_at_ms, created_ms) VALUES (2, 'msg_1', 'x', '{}', 'pending', 0,"
                        " 0, 0)"
                    )
                )
    finally:
        async with database.write_engine.begin() as connection:
            for table in ("delivery_attempts", "outbox", "partner_postbacks"):
                await connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608
            await connection.execute(text("DELETE FROM partners WHERE id = 91"))
        await database.dispose()
