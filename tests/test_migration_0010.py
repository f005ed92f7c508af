"""Migration 0010 (conversion sources) on a database that already holds conversions: they keep
their rows, with no source and the rule's commission; a source can then be stored, and the
migration goes down again cleanly. On SQLite, and on PostgreSQL in a database of its own when
``CLICKTRAIL_TEST_POSTGRES_URL`` is set."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from backend.storage.db.engine import Database
from backend.storage.db.migrate import alembic_config, upgrade

POSTGRES_URL = os.environ.get("CLICKTRAIL_TEST_POSTGRES_URL", "")
OLD_CONVERSION = text(
    "INSERT INTO conversions (event_id, at_ms, merchant_id, order_id, amount_minor,"
    " commission_minor, currency, status, source, event_name, flags)"
    " VALUES ('e1', 0, 1, 'o1', 100, 10, 'EUR', 'pending', 'pixel', 'sale', '')"
)


@pytest.fixture(params=["sqlite", *(["postgresql"] if POSTGRES_URL else [])])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    base = make_url(POSTGRES_URL)
    name = f"{base.database}_m0010"
    admin = Database.connect(POSTGRES_URL)
    engine = admin.write_engine.execution_options(isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield base.set(database=name).render_as_string(hide_password=False)
    async with engine.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    await admin.dispose()


async def test_old_conversions_keep_their_rows_and_the_migration_goes_down(
    empty_url: str,
) -> None:
    database = Database.connect(empty_url)
    await upgrade(database, empty_url, "0009")
    async with database.writing() as connection:
        await connection.execute(
            text(
                "INSERT INTO merchants (name, key, postback_secret, domains, currency,"
                " created_at) VALUES ('M', 'mk', 's', '[]', 'EUR', CURRENT_TIMESTAMP)"
            )
        )
        await connection.execute(OLD_CONVERSION)
    await upgrade(database, empty_url, "0010")
    async with database.writing() as connection:
        row = (
            await connection.execute(
                text("SELECT order_id, source_id, commission_reported FROM conversions")
            )
        ).one()
        assert tuple(row) == ("o1", None, False)
        await connection.execute(
            text(
                "INSERT INTO conversion_sources (merchant_id, name, preset, token_hash,"
                " token_hint, fields, statuses, allow_ips, created_at) VALUES (1, 'N', '',"
                " 'h', 'src_', '{}', '{}', '[]', CURRENT_TIMESTAMP)"
            )
        )

    def down(connection: Connection) -> None:
        config = alembic_config(empty_url)
        config.attributes["connection"] = connection
        command.downgrade(config, "0009")

    async with database.write_engine.begin() as connection:
        await connection.run_sync(down)
    async with database.writing() as connection:
        columns = (await connection.execute(text("SELECT * FROM conversions"))).keys()
        assert "source_id" not in columns
    await database.dispose()
