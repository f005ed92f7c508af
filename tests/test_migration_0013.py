"""Migration 0013 on a database that already holds merchants, partners and conversions: the
payout settings start at their defaults (no hold, no minimum, no schedule, no details), the
ledger starts with what approved conversions earned and takes entries but refuses to change
or lose one, SQLite refuses a money
amount that is not an integer, and the downgrade takes it all away. On SQLite, and on
PostgreSQL (a database of its own) when it is configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from backend.storage.db.engine import Database
from backend.storage.db.migrate import upgrade
from tests.conftest import BACKENDS
from tests.migration_support import downgrade_to, fresh_url

MERCHANT = text(
    "INSERT INTO merchants (name, key, postback_secret, domains, currency, created_at,"
    " coupon_over_click) VALUES ('Shop', 'mk_1', 's', '[]', 'EUR', CURRENT_TIMESTAMP, false)"
)
PARTNER = text(
    "INSERT INTO partners (name, key, status, created_at) VALUES ('Blog', 'pk_1', 'active',"
    " CURRENT_TIMESTAMP)"
)
CONVERSION = text(
    "INSERT INTO conversions (event_id, at_ms, merchant_id, order_id, partner_id, campaign_id,"
    " amount_minor, commission_minor, currency, status, source, event_name, flags)"
    " VALUES (:event, 5, 1, :event, :partner, 1, 1000, 100, 'EUR', :status, 'pixel', 'sale', '')"
)
ENTRY = text(
    "INSERT INTO ledger_entries (partner_id, merchant_id, currency, amount_minor, kind, at_ms)"
    " VALUES (1, 1, 'EUR', :amount, 'adjustment', 0)"
)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_payout_tables_and_settings_both_ways(backend: str, tmp_path: Path) -> None:
    url = await fresh_url(backend, tmp_path, "m0013")
    database = Database.connect(url)
    await upgrade(database, url, "0012")
    async with database.writing() as connection:
        await connection.execute(MERCHANT)
        await connection.execute(PARTNER)
        for event, owner, status in (
            ("paid-before", 1, "approved"),
            ("open", 1, "pending"),
            ("nobody", None, "approved"),
        ):
            await connection.execute(
                CONVERSION, {"event": event, "partner": owner, "status": status}
            )

    await upgrade(database, url, "0013")
    async with database.writing() as connection:
        merchant = await connection.execute(
            text("SELECT payout_minimum_minor, hold_days, payout_schedule, iban FROM merchants")
        )
        assert [tuple(row) for row in merchant] == [(0, 0, "", None)]
        partner = await connection.execute(text("SELECT payout_method, iban FROM partners"))
        assert [tuple(row) for row in partner] == [(None, None)]
        booked = await connection.execute(
            text("SELECT partner_id, amount_minor, kind, at_ms FROM ledger_entries")
        )
        assert [tuple(row) for row in booked] == [(1, 100, "earned", 5)]
        rules = await connection.execute(text("SELECT DISTINCT commission_rule FROM conversions"))
        assert [tuple(row) for row in rules] == [("",)]
        await connection.execute(ENTRY, {"amount": -250})
        total = await connection.scalar(text("SELECT SUM(amount_minor) FROM ledger_entries"))
        assert total == -150
    for change in ("UPDATE ledger_entries SET amount_minor = 0", "DELETE FROM ledger_entries"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with database.writing() as connection:
                await connection.execute(text(change))
    if backend == "sqlite":
        with pytest.raises(IntegrityError):
            async with database.writing() as connection:
                await connection.execute(ENTRY, {"amount": 2.5})

    await downgrade_to(database, url, "0012")
    async with database.writing() as connection:
        names = await connection.execute(text("SELECT name FROM merchants"))
        assert [tuple(row) for row in names] == [("Shop",)]
    for gone in ("SELECT hold_days FROM merchants", "SELECT id FROM ledger_entries"):
        with pytest.raises(DBAPIError):
            async with database.writing() as connection:
                await connection.execute(text(gone))
    await upgrade(database, url)
    await database.dispose()
