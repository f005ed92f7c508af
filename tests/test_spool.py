"""Redis down: the browser is still answered and every event is kept on disk, then replayed."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from backend.core.settings import Settings
from backend.domain.events import decode_entry, decode_event
from backend.storage.redis_client import connect
from backend.storage.streams.entries import split_entry
from backend.storage.streams.spool import Spool, read_records
from backend.storage.streams.writer import StreamUnavailable, StreamWriter
from backend.web.app import create_app
from tests.support import BROWSER_HEADERS, Programme


async def test_pixel_and_redirect_answer_while_redis_is_down_and_nothing_is_lost(
    settings: Settings, programme: Programme, redis: Redis, tmp_path: Path
) -> None:
    dead = settings.with_overrides(redis_url=f"unix://{tmp_path}/no-redis.sock")
    app = create_app(dead)
    async with AsyncTestClient(app) as client:
        client.follow_redirects = False
        pixel = await client.get(
            "/p.gif", params={"m": programme.merchant["key"], "oid": "S1", "amt": "3.00"}
        )
        redirect = await client.get(f"/c/{programme.link['code']}", headers=BROWSER_HEADERS)
        writer: StreamWriter = app.state.writer
        assert writer.spooled == 2
    assert pixel.status_code == 200
    assert len(pixel.content) == 43
    assert redirect.status_code == 302

    spool = Spool(settings.var_dir / "spool")
    (path,) = spool.directory.glob("*.bin")
    events = [decode_event(record) for record in read_records(path)]
    assert [type(event).__name__ for event in events] == ["ConversionEvent", "ClickEvent"]

    live = StreamWriter(connect(settings.redis_url), settings.stream, spool)
    assert await live.replay_spool() == 2
    ((_, fields),) = await redis.xrange(settings.stream)  # one entry, as a group commit writes
    assert decode_entry(fields[b"e"]) == events
    assert list(spool.directory.glob("*.bin")) == []


def test_a_torn_final_record_is_ignored(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([b"first", b"second"])
    with spool.active.open("ab") as handle:
        handle.write(b"\x00\x00\x00\x09part")
    assert list(read_records(spool.active)) == [b"first", b"second"]


def test_files_of_live_processes_are_not_claimed(tmp_path: Path) -> None:
    import os

    (tmp_path / "spool-1.bin").write_bytes(b"")  # pid 1 is alive (init)
    dead_pid = 2**22 + 12345
    (tmp_path / f"spool-{dead_pid}.bin").write_bytes(b"")
    own = Spool(tmp_path)
    own.append([b"x"])
    claimed = own.claim()
    assert len(claimed) == 2
    assert (tmp_path / "spool-1.bin").exists()
    assert all(path.name.startswith(f"claimed-{os.getpid()}-") for path in claimed)


async def test_writer_groups_concurrent_events_into_one_round_trip(
    settings: Settings, redis: Redis
) -> None:
    import asyncio

    writer = StreamWriter(connect(settings.redis_url), settings.stream, Spool(settings.var_dir))
    writer.start()
    await asyncio.gather(*(writer.put(msgspec.msgpack.encode(n)) for n in range(300)))
    await writer.close()
    entries = await redis.xrange(settings.stream)
    written = [part for _, fields in entries for part in split_entry(fields[b"e"])]
    assert written == [msgspec.msgpack.encode(n) for n in range(300)]
    assert writer.batches == len(entries) <= 3  # one round trip per event otherwise


async def test_put_or_fail_writes_at_once_and_raises_instead_of_spooling(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    writer = StreamWriter(connect(settings.redis_url), settings.stream, spool)
    await writer.put_or_fail(b"\x01")
    ((_, fields),) = await redis.xrange(settings.stream)
    assert split_entry(fields[b"e"]) == [b"\x01"]

    dead = StreamWriter(connect(f"unix://{tmp_path}/no-redis.sock"), settings.stream, spool)
    with pytest.raises(StreamUnavailable):
        await dead.put_or_fail(b"\x02")
    assert spool.size_bytes() == 0
    assert dead.spooled == 0
