"""Migration 0017 on a database with webhook endpoints: they stay merchants' and admins'
(``partner_id`` NULL), a partner's may be added, and the downgrade takes the column away. On
SQLite, and on PostgreSQL (a database of its own) when it is configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from backend.storage.db.engine import Database
from backend.storage.db.migrate import alembic_config, upgrade
from tests.conftest import BACKENDS, POSTGRES_URL

ENDPOINT = text(
    "INSERT INTO webhook_endpoints (url, events, secret, active, created_at)"
    " VALUES ('https://hooks.example/', '[]', 'whsec_x', true, CURRENT_TIMESTAMP)"
)


async def _fresh_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    url = make_url(POSTGRES_URL)
    name = f"{url.database}_m0017"
    server = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with server.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    await server.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_endpoints_stay_merchants_and_a_partner_may_own_one(
    backend: str, tmp_path: Path
) -> None:
    url = await _fresh_url(backend, tmp_path)
    database = Database.connect(url)
    await upgrade(database, url, "0016")
    async with database.writing() as connection:
        await connection.execute(ENDPOINT)
    await upgrade(database, url, "0017")
    async with database.writing() as connection:
        rows = await connection.execute(text("SELECT url, partner_id FROM webhook_endpoints"))
        assert [tuple(row) for row in rows] == [("https://hooks.example/", None)]

    def downgrade(connection: Connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.downgrade(config, "0016")

    async with database.write_engine.begin() as connection:
        await connection.run_sync(downgrade)
    async with database.writing() as connection:
        kept = await connection.execute(text("SELECT url FROM webhook_endpoints"))
        assert [tuple(row) for row in kept] == [("https://hooks.example/",)]
    await upgrade(database, url)
    await database.dispose()
