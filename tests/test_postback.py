"""Signed postbacks through real HTTP, Redis and the worker: signatures, replays, verification,
status changes by order id, secret rotation, and 503 when Redis is down."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import select, update

from backend.core.settings import Settings
from backend.domain.affiliate.postback import TOLERANCE_S
from backend.storage.db.engine import Database
from backend.storage.db.models import Conversion, ConversionChange, Merchant, RejectedEventRow
from backend.storage.redis_client import connect
from backend.storage.streams.spool import Spool
from backend.storage.streams.writer import StreamUnavailable, StreamWriter
from backend.web.app import create_app
from backend.worker.consumer import StreamConsumer
from tests.postback_support import PATH, sale, send, signed
from tests.support import Programme, follow_link


async def stored(database: Database, order_id: str) -> Conversion:
    async with database.session() as session:
        conversion = await session.scalar(select(Conversion).where(Conversion.order_id == order_id))
    assert conversion is not None
    return conversion


async def rejections(database: Database) -> list[tuple[str, str, str]]:
    async with database.session() as session:
        rows = await session.scalars(select(RejectedEventRow).order_by(RejectedEventRow.id))
        return [(row.source, row.reason, row.detail) for row in rows]


async def test_signed_sale_is_queued_and_stored_verified_with_its_click(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    click_id = await follow_link(client, programme.link["code"])
    response = await send(client, programme, sale("PB-1", "49.90", click_id=click_id))
    assert response.status_code == 202, response.text
    assert response.json()["queued"] is True

    await consumer.drain()
    conversion = await stored(database, "PB-1")
    assert (conversion.source, conversion.verified, conversion.status) == (
        "postback",
        True,
        "pending",
    )
    assert (conversion.amount_minor, conversion.link_id) == (4990, programme.link["id"])
    assert conversion.commission_minor == 549


async def test_amount_in_minor_units_and_a_currency_with_three_digits(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    body = {"type": "conversion", "order_id": "KW-1", "amount_minor": 12345, "currency": "KWD"}
    assert (await send(client, programme, body)).status_code == 202
    both = {**body, "order_id": "KW-2", "amount": "1.000"}
    refused = await send(client, programme, both)
    assert refused.status_code == 400
    assert refused.json()["extra"] == [{"key": "amount", "message": "give amount or amount_minor"}]
    await consumer.drain()
    conversion = await stored(database, "KW-1")
    assert (conversion.amount_minor, conversion.currency) == (12345, "KWD")
    assert ("postback", "missing_field") in [(s, r) for s, r, _ in await rejections(database)]


async def test_wrong_stale_future_and_missing_signatures_are_refused_and_kept(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    now = int(time.time())
    wrong = await send(client, programme, sale("X-1"), secret="not-the-secret")
    stale = await send(client, programme, sale("X-2"), at=now - TOLERANCE_S - 5)
    future = await send(client, programme, sale("X-3"), at=now + TOLERANCE_S + 5)
    raw = json.dumps({"merchant": programme.merchant["key"], **sale("X-4")}).encode()
    missing = await client.post(PATH, content=raw, headers={"content-type": "application/json"})
    malformed = await client.post(PATH, content=raw, headers={"Clicktrail-Signature": "sha256=abc"})
    _, good_headers = signed({"merchant": programme.merchant["key"], **sale("X-5")}, "x")
    tampered = await client.post(PATH, content=raw, headers=good_headers)
    answers = [wrong, stale, future, missing, malformed, tampered]
    assert [a.status_code for a in answers] == [401] * 6
    details = [a.json()["detail"] for a in answers]
    assert "does not match" in details[0]
    assert "does not match" in details[5]
    assert "more than 300 s" in details[1]
    assert "more than 300 s" in details[2]
    assert details[3] == "missing Clicktrail-Signature header"
    assert details[4].startswith("malformed")

    await consumer.drain()
    async with database.session() as session:
        assert (await session.scalars(select(Conversion))).all() == []
    assert [(s, r) for s, r, _ in await rejections(database)] == [("postback", "bad_signature")] * 6


async def test_unknown_merchant_is_refused(
    client: AsyncTestClient[Any], programme: Programme
) -> None:
    raw, headers = signed({"merchant": "mk_nobody", **sale("U-1")}, "secret")
    response = await client.post(PATH, content=raw, headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"] == "no merchant has this key"


async def test_replayed_request_is_a_duplicate_and_changes_nothing(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    raw, headers = signed(
        {"merchant": programme.merchant["key"], **sale("R-1")},
        programme.merchant["postback_secret"],
    )
    first = await client.post(PATH, content=raw, headers=headers)
    again = await client.post(PATH, content=raw, headers=headers)
    assert first.status_code == 202
    assert (again.status_code, again.json()) == (200, {"duplicate": True})
    assert await consumer.drain() == 1

    status_raw, status_headers = signed(
        {
            "merchant": programme.merchant["key"],
            "type": "status",
            "order_id": "R-1",
            "status": "approved",
        },
        programme.merchant["postback_secret"],
    )
    assert (await client.post(PATH, content=status_raw, headers=status_headers)).status_code == 200
    await client.patch(
        f"/api/v1/conversions/{(await stored(database, 'R-1')).id}",
        json={"status": "reversed"},
        headers=programme.headers,
    )
    replay = await client.post(PATH, content=status_raw, headers=status_headers)
    assert replay.json() == {"duplicate": True}
    assert (await stored(database, "R-1")).status == "reversed"


async def test_postback_for_a_pixel_order_verifies_it_and_keeps_the_trail(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    await client.get("/p.gif", params={"m": programme.merchant["key"], "oid": "P-1", "amt": "30"})
    await consumer.drain()
    assert (await stored(database, "P-1")).verified is False

    response = await send(client, programme, sale("P-1", "30.00"))
    assert response.status_code == 200, response.text
    assert response.json()["verified"] is True
    assert response.json()["differs"] == []
    assert response.json()["conversion"]["verified"] is True
    conversion = await stored(database, "P-1")
    assert (conversion.verified, conversion.status, conversion.source) == (True, "pending", "pixel")

    detail = (
        await client.get(f"/api/v1/conversions/{conversion.id}", headers=programme.headers)
    ).json()
    assert [
        (h["from_status"], h["to_status"], h["verified"], h["actor"]) for h in detail["history"]
    ] == [("pending", "pending", True, "postback")]


async def test_pixel_and_postback_racing_in_the_stream_end_verified(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    await client.get("/p.gif", params={"m": programme.merchant["key"], "oid": "RACE", "amt": "30"})
    assert (await send(client, programme, sale("RACE", "30.00"))).status_code == 202
    await client.get("/p.gif", params={"m": programme.merchant["key"], "oid": "RACE2", "amt": "5"})
    await consumer.drain()  # both in one batch: the pixel's row is inserted first
    assert (await send(client, programme, sale("RACE2", "5.00"))).status_code == 200

    conversion = await stored(database, "RACE")
    assert (conversion.source, conversion.verified) == ("pixel", True)
    async with database.session() as session:
        trail = (
            await session.scalars(
                select(ConversionChange.actor).where(
                    ConversionChange.conversion_id == conversion.id
                )
            )
        ).all()
    assert trail == ["postback"]
    assert await rejections(database) == []  # a confirmation, not a duplicate order


async def test_status_changes_by_order_id(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    early = await send(
        client, programme, {"type": "status", "order_id": "S-1", "status": "approved"}
    )
    assert early.status_code == 409
    assert "not stored yet" in early.json()["detail"]

    await client.get("/p.gif", params={"m": programme.merchant["key"], "oid": "S-1", "amt": "10"})
    await consumer.drain()
    refused = await send(
        client, programme, {"type": "status", "order_id": "S-1", "status": "reversed"}
    )
    assert refused.status_code == 409
    approved = await send(
        client,
        programme,
        {"type": "status", "order_id": "S-1", "status": "approved", "reason": "shipped"},
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["conversion"]["status"] == "approved"
    repeated = await send(
        client, programme, {"type": "status", "order_id": "S-1", "status": "approved"}
    )
    assert repeated.json()["changed"] is False
    reversed_ = await send(
        client,
        programme,
        {"type": "status", "order_id": "S-1", "status": "reversed", "reason": "refund"},
    )
    assert reversed_.json()["conversion"]["status"] == "reversed"

    conversion = await stored(database, "S-1")
    assert (conversion.status, conversion.verified) == ("reversed", True)
    async with database.session() as session:
        trail = (
            await session.execute(
                select(
                    ConversionChange.from_status,
                    ConversionChange.to_status,
                    ConversionChange.reason,
                )
                .where(ConversionChange.conversion_id == conversion.id)
                .order_by(ConversionChange.id)
            )
        ).all()
    assert [tuple(row) for row in trail] == [
        ("pending", "approved", "shipped"),
        ("approved", "reversed", "refund"),
    ]


async def test_a_request_that_failed_can_be_retried_with_the_same_signature(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    raw, headers = signed(
        {
            "merchant": programme.merchant["key"],
            "type": "status",
            "order_id": "L-1",
            "status": "rejected",
        },
        programme.merchant["postback_secret"],
    )
    assert (await client.post(PATH, content=raw, headers=headers)).status_code == 409
    await client.get("/p.gif", params={"m": programme.merchant["key"], "oid": "L-1", "amt": "10"})
    await consumer.drain()
    retry = await client.post(PATH, content=raw, headers=headers)
    assert retry.status_code == 200, retry.text
    assert (await stored(database, "L-1")).status == "rejected"


async def test_rotated_secret_keeps_the_previous_one_valid_for_a_grace_period(
    client: AsyncTestClient[Any], programme: Programme, database: Database
) -> None:
    old = programme.merchant["postback_secret"]
    url = f"/api/v1/merchants/{programme.merchant['id']}/rotate-secret"
    rotated = await client.post(url, headers=programme.headers)
    assert rotated.status_code == 200
    new = rotated.json()["postback_secret"]
    assert new != old
    assert (await send(client, programme, sale("G-1"), secret=new)).status_code == 202
    assert (await send(client, programme, sale("G-2"), secret=old)).status_code == 202

    async with database.session(write=True) as session:
        await session.execute(update(Merchant).values(previous_secret_until_ms=0))
        await session.commit()
    expired = await send(client, programme, sale("G-3"), secret=old)
    assert expired.status_code == 401


async def test_redis_down_answers_503_with_retry_after(
    settings: Settings, programme: Programme, redis: Redis, tmp_path: Path
) -> None:
    dead = settings.with_overrides(redis_url=f"unix://{tmp_path}/no-redis.sock")
    async with AsyncTestClient(create_app(dead)) as client:
        response = await send(client, programme, sale("D-1"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"

    writer = StreamWriter(connect(dead.redis_url), dead.stream, Spool(tmp_path / "spool"))
    with pytest.raises(StreamUnavailable):
        await writer.put_or_fail(b"event")
    assert writer.spooled == 0  # a sender that can retry is told so, nothing is spooled
