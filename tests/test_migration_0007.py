"""Migration 0007 on a database that already holds events: the network prefixes are gone from
the rows and from the file, and referrers and impression pages keep their origin and path."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from backend.storage.db.engine import Database
from backend.storage.db.migrate import upgrade

PREFIX = "198.51.100.0/24"


async def test_prefixes_and_query_strings_are_gone_after_the_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{path}"
    database = Database.connect(url)
    await upgrade(database, url, "0005")
    referrers = [
        "https://blog.example/post?email=ann%40mail.example&token=s3cret",
        "https://blog.example/page#access_token=s3cret",
        "https://search.example/",
        "",
    ]
    async with database.writing() as connection:
        for number, referrer in enumerate(referrers):
            await connection.execute(
                text(
                    "INSERT INTO clicks VALUES (:id, 0, 1, 1, 1, 1, :prefix, :hash, 'desktop',"
                    " 'chrome', '', :url, '', '', '', '', '', '', '', '', '', '', '', 0, 1, '')"
                ),
                {"id": f"c{number}", "prefix": PREFIX, "hash": "h" * 32, "url": referrer},
            )
            await connection.execute(
                text(
                    "INSERT INTO impressions"
                    " VALUES (:id, 0, 1, 1, 1, 1, :prefix, :hash, :url, 0, 1)"
                ),
                {"id": f"i{number}", "prefix": PREFIX, "hash": "h" * 32, "url": referrer},
            )
        await connection.execute(
            text(
                "INSERT INTO conversions (event_id, at_ms, merchant_id, order_id, amount_minor,"
                " commission_minor, currency, status, source, event_name, ip_prefix, flags)"
                " VALUES ('e1', 0, 1, 'o1', 100, 10, 'EUR', 'pending', 'pixel', 'sale', :prefix,"
                " '')"
            ),
            {"prefix": PREFIX},
        )

    await upgrade(database, url)

    async with database.writing() as connection:
        clicks = (await connection.execute(text("SELECT * FROM clicks ORDER BY click_id"))).all()
        pages = (
            await connection.execute(text("SELECT page_url FROM impressions ORDER BY event_id"))
        ).scalars()
        conversion = (await connection.execute(text("SELECT * FROM conversions"))).one()
    assert await database.truncate_wal()
    await database.dispose()
    stripped = ["https://blog.example/post", "https://blog.example/page", *referrers[2:]]
    assert [click.referrer_url for click in clicks] == stripped
    assert list(pages) == stripped
    for row in (*clicks, conversion):
        assert "ip_prefix" not in row._fields
    for secret in (PREFIX.encode(), b"s3cret"):
        assert secret not in files_of(path)


def files_of(database: Path) -> bytes:
    """The database file and the files SQLite keeps beside it (the WAL and its index)."""
    return b"".join(part.read_bytes() for part in database.parent.glob(database.name + "*"))
