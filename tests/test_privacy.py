"""No raw IP address is kept: after a full journey through a trusted proxy, the client's
address is nowhere in the database file, Redis (keys, values, AOF), the spool or the logs, and
its network prefix is not in the database either (next to a visitor hash it would narrow the
address down to 256 candidates)."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import Connection, func, inspect, select

from backend.core.clock import DAY_S
from backend.core.settings import Settings
from backend.domain.visitor import SALT_GRACE_S, DailySalt, forget_past_salts
from backend.storage.db.engine import Database
from backend.storage.db.models import Click, Conversion, Impression, RejectedEventRow
from backend.storage.erasure import rewrite_append_only_file
from backend.storage.redis_server import EmbeddedRedis
from backend.web.app import create_app
from backend.worker.consumer import StreamConsumer
from backend.worker.main import forget_job, worker_options
from tests.support import BROWSER_HEADERS, Programme, follow_link

CLIENT_V4 = "198.51.100.77"
CLIENT_V6 = "2001:db8:abcd:12:3456:789a:bcde:f012"
PREFIXES = ("198.51.100.0/24", "2001:db8:abcd::/48")


async def redis_bytes(redis: Redis) -> bytes:
    chunks: list[bytes] = []
    async for key in redis.scan_iter():
        chunks.append(key)
        dumped = await redis.dump(key)
        if dumped:
            chunks.append(dumped)
    return b"\n".join(chunks)


async def test_client_addresses_are_nowhere_after_a_journey(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    settings: Settings,
    redis: Redis,
    redis_server: EmbeddedRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for address in (CLIENT_V4, CLIENT_V6):
        headers = {**BROWSER_HEADERS, "x-forwarded-for": address}
        click_id = await follow_link(client, programme.link["code"], headers)
        await client.get(
            "/p.gif",
            params={
                "m": programme.merchant["key"],
                "oid": f"O{len(address)}",
                "amt": "1",
                "clk": click_id,
            },
            headers=headers,
        )
        await client.get("/p.gif", params={"m": "mk_unknown"}, headers=headers)
        await client.post(
            "/e",
            json={"p": programme.partner["key"], "events": [{"l": programme.link["code"]}]},
            headers=headers,
        )
    in_stream = await redis_bytes(redis)
    assert await consumer.drain() == 8

    async with database.session() as session:
        assert await session.scalar(select(func.count()).select_from(Click)) == 2
        assert await session.scalar(select(func.count()).select_from(Conversion)) == 2
        columns = await (await session.connection()).run_sync(stored_columns)
    assert not [column for column in columns if "prefix" in column]

    access = [r.getMessage() for r in caplog.records if r.name == "clicktrail.access"]
    assert any(line.startswith('198.51.100.0/24 "GET /c/') for line in access), access
    assert any(line.startswith('2001:db8:abcd::/48 "GET /p.gif" 200') for line in access), access

    await database.dispose()
    haystacks: dict[str, bytes] = {
        "stream before the worker": in_stream,
        "redis after the worker": await redis_bytes(redis),
        "logs": caplog.text.encode(),
    }
    if settings.database_url.startswith("sqlite"):
        db_file = Path(settings.database_url.split("///", 1)[1])
        haystacks["database"] = b"".join(
            path.read_bytes() for path in db_file.parent.glob(db_file.name + "*")
        )
    assert await rewrite_append_only_file(redis)
    for path in [*settings.var_dir.rglob("*"), *redis_server.directory.rglob("*")]:
        if path.is_file():
            haystacks[str(path)] = path.read_bytes()
    for where, data in haystacks.items():
        for address in (CLIENT_V4, CLIENT_V6):
            assert address.encode() not in data, f"{address} found in {where}"
    for prefix in PREFIXES:
        assert prefix.encode() not in haystacks.get("database", b""), f"{prefix} in the database"


def stored_columns(connection: Connection) -> list[str]:
    """Every table's columns, as ``table.column``."""
    schema = inspect(connection)
    return [
        f"{table}.{column['name']}"
        for table in schema.get_table_names()
        for column in schema.get_columns(table)
    ]


async def test_privacy_signals_keep_the_cookie_off_the_device(
    client: AsyncTestClient[Any], programme: Programme, settings: Settings, redis: Redis
) -> None:
    url = f"/c/{programme.link['code']}"
    gpc = await client.get(url, headers={**BROWSER_HEADERS, "sec-gpc": "1"})
    dnt = await client.get(url, headers={**BROWSER_HEADERS, "dnt": "1"})
    assert "set-cookie" not in gpc.headers
    assert "ct_click=" in gpc.headers["location"]
    assert "set-cookie" in dnt.headers  # Do Not Track is honoured only when configured

    honouring = settings.with_overrides(honor_dnt=True, honor_gpc=False)
    async with AsyncTestClient(create_app(honouring)) as other:
        other.follow_redirects = False
        assert (
            "set-cookie"
            not in (await other.get(url, headers={**BROWSER_HEADERS, "dnt": "1"})).headers
        )
        assert (
            "set-cookie"
            in (await other.get(url, headers={**BROWSER_HEADERS, "sec-gpc": "1"})).headers
        )


PRIVATE = "ann%40mail.example&token=s3cret"  # what a page's query string or a shop may carry


async def test_referrers_and_pages_keep_their_origin_and_path_only(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    """The query string and fragment of a Referer (emails, tokens), and user info, are cut at
    the edge: a publisher's page may send its whole URL, whatever the snippet does."""
    code = programme.link["code"]
    await follow_link(
        client, code, {**BROWSER_HEADERS, "Referer": f"https://blog.example/post?e={PRIVATE}#x"}
    )
    response = await client.get(
        f"/c/{code}",
        params={"ct_page": f"/reviews/best?e={PRIVATE}"},
        headers={**BROWSER_HEADERS, "Referer": "https://user:pass@blog.example/?e=1"},
    )
    assert response.status_code == 302
    await client.post(
        "/e",
        json={"p": programme.partner["key"], "events": [{"l": code}]},
        headers={**BROWSER_HEADERS, "Referer": f"https://blog.example/article?e={PRIVATE}"},
    )
    assert await consumer.drain() == 3

    async with database.session() as session:
        clicks = (await session.execute(select(Click.referrer_url, Click.referrer_host))).all()
        pages = (await session.scalars(select(Impression.page_url))).all()
    assert sorted(clicks) == [
        ("https://blog.example/post", "blog.example"),
        ("https://blog.example/reviews/best", "blog.example"),
    ]
    assert pages == ["https://blog.example/article"]


async def test_rejected_events_keep_only_the_fields_the_edge_reads(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    """A refused click keeps its path, a refused pixel or beacon the fields the edge reads:
    enough to see what was wrong, not the rest of what came along."""
    await client.get(f"/c/nolink?sub1={PRIVATE}&to=https://shop.example/?e={PRIVATE}")
    await client.get(f"/p.gif?m=mk_unknown&oid=A-1&amt=9&email={PRIVATE}")
    merchant = programme.merchant["key"]
    beacon = {"t": "conversion", "oid": "A-2", "amt": "nine", "email": PRIVATE}
    await client.post("/e", json={"m": merchant, "events": [beacon], "page": PRIVATE})
    await client.post("/e", json={"m": "mk_unknown", "events": [beacon]})
    await client.post("/e", content=f'{{"m": "{merchant}", "email": "{PRIVATE}"'.encode())
    await consumer.drain()

    async with database.session() as session:
        rejected = (
            await session.execute(select(RejectedEventRow.reason, RejectedEventRow.payload))
        ).all()
    kept = {"t": "conversion", "oid": "A-2", "amt": "nine"}
    assert sorted((reason, payload) for reason, payload in rejected) == [
        ("invalid_amount", json.dumps(kept, separators=(",", ":"))),
        ("invalid_event", ""),  # not JSON: nothing is kept
        ("unknown_link", "/c/nolink"),
        ("unknown_merchant", "m=mk_unknown&oid=A-1&amt=9"),
        (
            "unknown_merchant",
            json.dumps({"m": "mk_unknown", "events": [kept]}, separators=(",", ":")),
        ),
    ]


async def test_a_past_days_salt_is_gone_from_redis_and_from_its_files(
    redis: Redis, redis_server: EmbeddedRedis
) -> None:
    """A salt expires with its day (a few minutes after); the daily job deletes the past ones
    and has Redis rewrite its append-only file, which keeps them otherwise. Then the hashes of
    that day cannot be recomputed from what is on disk."""
    now = time.time()
    today = await DailySalt(redis, clock=lambda: now).current()
    tomorrow = await DailySalt(redis, clock=lambda: now + DAY_S).current()
    assert today != tomorrow
    end_of_today = (now // DAY_S + 1) * DAY_S
    assert 0 < await redis.ttl(salt_key(now)) <= end_of_today + SALT_GRACE_S - now + 1
    assert today in files_of(redis_server.directory)

    assert await forget_past_salts(redis, now_s=now + DAY_S)

    assert await redis.get(salt_key(now)) is None
    on_disk = files_of(redis_server.directory)
    assert today not in on_disk
    assert tomorrow in on_disk  # the live one: every web process hashes with it


def test_the_worker_forgets_past_salts_daily_after_midnight_utc(settings: Settings) -> None:
    options = worker_options(settings, settings.redis_url)
    (job,) = [job for job in options["cron_jobs"] if job.coroutine is forget_job]
    assert (job.hour, job.minute, job.unique) == ({0}, {20}, True)
    assert options["timezone"] is UTC


def salt_key(at_s: float) -> str:
    return f"ct:salt:{datetime.fromtimestamp(at_s, UTC):%Y-%m-%d}"


def files_of(directory: Path) -> bytes:
    """Every file's bytes under ``directory``."""
    return b"".join(path.read_bytes() for path in directory.rglob("*") if path.is_file())
