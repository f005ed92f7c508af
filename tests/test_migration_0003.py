"""Migration 0003 on a database that already holds conversions: who could have confirmed them
before (a postback, a person's approval) makes them verified; pixel sales still pending do not."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from backend.storage.db.engine import Database
from backend.storage.db.migrate import upgrade


async def test_existing_postback_and_approved_conversions_become_verified(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    database = Database.connect(url)
    await upgrade(database, url, "0002")
    async with database.writing() as connection:
        for number, (source, status) in enumerate(
            [
                ("pixel", "pending"),
                ("postback", "pending"),
                ("js", "approved"),
                ("pixel", "reversed"),
            ]
        ):
            await connection.execute(
                text(
                    "INSERT INTO conversions (event_id, at_ms, merchant_id, order_id, amount_minor,"
                    " commission_minor, currency, status, source, event_name, ip_prefix, flags)"
                    " VALUES (:event_id, 0, 1, :order_id, 100, 10, 'EUR', :status, :source,"
                    " 'sale', '', '')"
                ),
                {
                    "event_id": f"e{number}",
                    "order_id": f"o{number}",
                    "status": status,
                    "source": source,
                },
            )
    await upgrade(database, url)
    async with database.writing() as connection:
        rows = (await connection.execute(text("SELECT order_id, verified FROM conversions"))).all()
    await database.dispose()
    assert sorted((order_id, bool(verified)) for order_id, verified in rows) == [
        ("o0", False),
        ("o1", True),
        ("o2", True),
        ("o3", True),
    ]
