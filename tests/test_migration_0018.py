"""Migration 0018 on a database with a merchant: it gets the locale "en" (its money reads
"€1,234.50" as the pages wrote it before), another may be given its own, and the downgrade takes
the column away. On SQLite, and on PostgreSQL (a database of its own) when it is configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from backend.storage.db.engine import Database
from backend.storage.db.migrate import upgrade
from tests.conftest import BACKENDS
from tests.migration_support import downgrade_to, fresh_url

MERCHANT = text(
    "INSERT INTO merchants (name, key, postback_secret, domains, currency, created_at)"
    " VALUES ('Shop', 'mk_shop', 'secret', '[]', 'EUR', CURRENT_TIMESTAMP)"
)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_merchants_read_in_english_until_given_a_locale(backend: str, tmp_path: Path) -> None:
    url = await fresh_url(backend, tmp_path, "m0018")
    database = Database.connect(url)
    await upgrade(database, url, "0017")
    async with database.writing() as connection:
        await connection.execute(MERCHANT)
    await upgrade(database, url, "0018")
    async with database.writing() as connection:
        await connection.execute(
            text(
                "INSERT INTO merchants (name, key, postback_secret, domains, currency, locale,"
                " created_at) VALUES ('Laden', 'mk_laden', 's', '[]', 'EUR', 'de_DE',"
                " CURRENT_TIMESTAMP)"
            )
        )
        rows = await connection.execute(text("SELECT key, locale FROM merchants ORDER BY id"))
        assert [tuple(row) for row in rows] == [("mk_shop", "en"), ("mk_laden", "de_DE")]

    await downgrade_to(database, url, "0017")
    async with database.writing() as connection:
        kept = await connection.execute(text("SELECT key FROM merchants ORDER BY id"))
        assert [tuple(row) for row in kept] == [("mk_shop",), ("mk_laden",)]
    await upgrade(database, url)
    await database.dispose()
