"""No raw IP address is kept: after a full journey through a trusted proxy, the client's
address is nowhere in the database file, Redis (keys, values, AOF), the spool or the logs, and
its network prefix is not in the database either (next to a visitor hash it would narrow the
address down to 256 candidates)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy import Connection, func, inspect, select

from backend.app import create_app
from backend.db.engine import Database
from backend.db.models import Click, Conversion
from backend.redis_server import EmbeddedRedis
from backend.settings import Settings
from backend.worker.consumer import StreamConsumer
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
    await rewrite_append_only_file(redis)
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


async def rewrite_append_only_file(redis: Redis) -> None:
    """Rewrite the AOF from what Redis holds now, waiting out a rewrite Redis started itself."""
    for _ in range(2):
        await aof_rewrite_finished(redis)
        try:
            await redis.bgrewriteaof()  # type: ignore[no-untyped-call]
        except ResponseError:  # an automatic rewrite began in between: wait it out, ask again
            continue
        await aof_rewrite_finished(redis)
        return
    raise AssertionError("Redis kept rewriting its append-only file on its own")


async def aof_rewrite_finished(redis: Redis, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if not (await redis.info("persistence"))["aof_rewrite_in_progress"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the append-only file rewrite took over {timeout_s} s")
