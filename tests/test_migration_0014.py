"""Migration 0014 on a database that already holds sources, campaigns and conversions: the
sources become of kind "network", campaigns pay no renewals, conversions have no customer and
no renewal rule; the bindings and store events are unique as the worker relies on (the first
binding of a customer wins); the downgrade takes it all away again. On SQLite, and on
PostgreSQL (a database of its own beside the tests' one) when it is configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from backend.storage.db.engine import Database
from backend.storage.db.migrate import upgrade
from tests.conftest import BACKENDS
from tests.migration_support import downgrade_to, fresh_url

SETUP = (
    "INSERT INTO merchants (id, name, key, postback_secret, domains, currency, created_at,"
    " coupon_over_click) VALUES (1, 'Shop', 'mk_1', 's', '[]', 'EUR', CURRENT_TIMESTAMP, false)",
    "INSERT INTO campaigns (id, merchant_id, name, destination_url, commission_bps,"
    " commission_flat_minor, status, created_at) VALUES (1, 1, 'C', 'https://shop.example/',"
    " 1000, 0, 'active', CURRENT_TIMESTAMP)",
    "INSERT INTO conversion_sources (merchant_id, name, preset, token_hash, token_hint, fields,"
    " statuses, allow_ips, created_at) VALUES (1, 'Net', '', 'h', 'src_x', '{}', '{}', '[]',"
    " CURRENT_TIMESTAMP)",
    "INSERT INTO conversions (event_id, at_ms, merchant_id, order_id, amount_minor,"
    " commission_minor, currency, status, source, event_name, flags) VALUES ('e1', 0, 1, 'o1',"
    " 100, 10, 'EUR', 'pending', 'pixel', 'sale', '')",
)
BIND = text(
    "INSERT INTO customer_bindings (merchant_id, customer_hash, partner_id, campaign_id,"
    " conversion_id, at_ms) VALUES (1, 'h1', :partner, 1, 1, 0)"
)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_stores_and_renewals_columns_and_tables_both_ways(
    backend: str, tmp_path: Path
) -> None:
    url = await fresh_url(backend, tmp_path, "m0014")
    database = Database.connect(url)
    await upgrade(database, url, "0013")
    async with database.writing() as connection:
        for statement in SETUP:
            await connection.execute(text(statement))

    await upgrade(database, url, "0014")
    async with database.writing() as connection:
        source = await connection.execute(
            text("SELECT kind, signing_secret, shop_domain FROM conversion_sources")
        )
        assert [tuple(row) for row in source] == [("network", None, None)]
        campaign = await connection.execute(
            text("SELECT renewal_mode, renewal_months, renewal_bps FROM campaigns")
        )
        assert [tuple(row) for row in campaign] == [("none", None, None)]
        conversion = await connection.execute(
            text("SELECT customer_hash, renewal_rule FROM conversions")
        )
        assert [tuple(row) for row in conversion] == [(None, "")]
        await connection.execute(BIND, {"partner": 7})
    with pytest.raises(IntegrityError):  # one binding per merchant and customer
        async with database.writing() as connection:
            await connection.execute(BIND, {"partner": 8})
    async with database.writing() as connection:
        bound = await connection.execute(text("SELECT partner_id FROM customer_bindings"))
        assert [tuple(row) for row in bound] == [(7,)]

    await downgrade_to(database, url, "0013")
    async with database.writing() as connection:
        tables = await connection.execute(text("SELECT count(*) FROM conversions"))
        assert tables.scalar() == 1
        with pytest.raises(Exception, match="customer_bindings"):
            await connection.execute(text("SELECT * FROM customer_bindings"))
    await upgrade(database, url)
    await database.dispose()
