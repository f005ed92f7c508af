"""Migration 0015 on a database that already holds a merchant, a partner and a user: the
self-service tables come and go, the existing rows stay, and on the way up a token of a deleted
user goes with its user. On SQLite, and on PostgreSQL (a database of its own beside the tests'
one) when it is configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from backend.storage.db.engine import Database
from backend.storage.db.migrate import upgrade
from tests.conftest import BACKENDS
from tests.migration_support import downgrade_to, fresh_url

NEW_TABLES = {
    "mail_outbox",
    "programmes",
    "partner_applications",
    "programme_members",
    "account_tokens",
    "notification_settings",
    "coupon_requests",
}


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_self_service_tables_come_and_go_and_keep_what_was_there(
    backend: str, tmp_path: Path
) -> None:
    url = await fresh_url(backend, tmp_path, "m0015")
    database = Database.connect(url)
    await upgrade(database, url, "0012")
    async with database.writing() as connection:
        await connection.execute(
            text(
                "INSERT INTO merchants (name, key, postback_secret, domains, currency,"
                " coupon_over_click, created_at) VALUES ('Shop', 'mk_1', 's', '[]', 'EUR',"
                " false, CURRENT_TIMESTAMP)"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO users (email, password_hash, role, created_at, session_epoch)"
                " VALUES ('a@b.example', 'h', 'admin', CURRENT_TIMESTAMP, 'e')"
            )
        )
        assert not NEW_TABLES & await connection.run_sync(_tables)

    await upgrade(database, url, "0015")
    async with database.writing() as connection:
        assert await connection.run_sync(_tables) >= NEW_TABLES
        await connection.execute(
            text("INSERT INTO programmes (merchant_id, slug) SELECT id, 'shop' FROM merchants")
        )
        row = (
            await connection.execute(text("SELECT open, auto_approve, terms FROM programmes"))
        ).one()
        assert (bool(row[0]), bool(row[1]), row[2]) == (False, False, "")  # closed by default
        await connection.execute(
            text(
                "INSERT INTO account_tokens (token_hash, purpose, user_id, expires_ms,"
                " created_ms) SELECT 'x', 'reset', id, 1, 1 FROM users"
            )
        )
        await connection.execute(text("DELETE FROM users"))
        assert (await connection.execute(text("SELECT COUNT(*) FROM account_tokens"))).scalar() == 0

    await downgrade_to(database, url, "0012")
    async with database.writing() as connection:
        assert not NEW_TABLES & await connection.run_sync(_tables)
        names = (await connection.execute(text("SELECT name FROM merchants"))).scalars().all()
        assert names == ["Shop"]
    await database.dispose()
