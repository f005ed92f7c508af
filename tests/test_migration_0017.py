"""Migration 0017 on a database with webhook endpoints: they stay merchants' and admins'
(``partner_id`` NULL), a partner's may be added, and the downgrade takes the column away. On
SQLite, and on PostgreSQL (a database of its own) when it is configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from backend.storage.db.engine import Database
from backend.storage.db.migrate import upgrade
from tests.conftest import BACKENDS
from tests.migration_support import downgrade_to, fresh_url

ENDPOINT = text(
    "INSERT INTO webhook_endpoints (url, events, secret, active, created_at)"
    " VALUES ('https://hooks.example/', '[]', 'whsec_x', true, CURRENT_TIMESTAMP)"
)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_endpoints_stay_merchants_and_a_partner_may_own_one(
    backend: str, tmp_path: Path
) -> None:
    url = await fresh_url(backend, tmp_path, "m0017")
    database = Database.connect(url)
    await upgrade(database, url, "0016")
    async with database.writing() as connection:
        await connection.execute(ENDPOINT)
    await upgrade(database, url, "0017")
    async with database.writing() as connection:
        rows = await connection.execute(text("SELECT url, partner_id FROM webhook_endpoints"))
        assert [tuple(row) for row in rows] == [("https://hooks.example/", None)]

    await downgrade_to(database, url, "0016")
    async with database.writing() as connection:
        kept = await connection.execute(text("SELECT url FROM webhook_endpoints"))
        assert [tuple(row) for row in kept] == [("https://hooks.example/",)]
    await upgrade(database, url)
    await database.dispose()
