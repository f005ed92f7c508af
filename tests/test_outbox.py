"""Outgoing partner postbacks and merchant webhooks, against real HTTP servers on loopback: the
partner's tracker and the merchant's receiver. A conversion writes its messages in the batch's
transaction; the worker's courier delivers them with retries, the same message id each time,
signed per Standard Webhooks; private targets are refused; a dead endpoint holds nothing up."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import insert, select, update
from standardwebhooks.webhooks import Webhook

from backend.core.clock import now_ms
from backend.core.settings import IpNetwork, load_settings
from backend.domain.affiliate.delivery import (
    MAX_ATTEMPTS,
    SCHEDULE_S,
    deliver_due,
    retry_delay_ms,
)
from backend.storage.db.engine import Database
from backend.storage.db.models import (
    Conversion,
    DeliveryAttempt,
    OutboxMessage,
    PartnerPostback,
    WebhookEndpoint,
)
from backend.worker.consumer import StreamConsumer
from backend.worker.deliveries import Courier
from backend.worker.retention import purge_expired
from tests.postback_support import sale, send
from tests.support import (
    BROWSER_HEADERS,
    Programme,
    add_partner_with_link,
    create_api_key,
    follow_link,
    sign_in,
)
from tests.test_admin import sign_in_partner, submit

LOOPBACK_ALLOWED: tuple[IpNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"),)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A loopback HTTP server that records what it receives and answers with ``statuses`` in
    turn (then 200)."""

    url: str
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


def _serve(receiver_factory: Any) -> Iterator[Receiver]:
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            receiver.received.append(Received(self.command, self.path, dict(self.headers), body))
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            text = b"ok" if status < 300 else b"try later"
            self.send_response(status)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def tracker() -> Iterator[Receiver]:
    """The partner's tracker (Voluum, Binom... style GET postbacks)."""
    yield from _serve(None)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """The merchant's webhook receiver."""
    yield from _serve(None)


async def _sale(
    client: AsyncTestClient[Any], programme: Programme, order_id: str, sub1: str = "sidebar"
) -> str:
    response = await client.get(
        f"/c/{programme.link['code']}", params={"sub1": sub1}, headers=BROWSER_HEADERS
    )
    assert response.status_code == 302
    click_id = parse_qs(urlsplit(response.headers["location"]).query)["ct_click"][0]
    pixel = await client.get(
        "/p.gif",
        params={
            "m": programme.merchant["key"],
            "oid": order_id,
            "amt": "49.90",
            "cur": "EUR",
            "clk": click_id,
        },
    )
    assert pixel.status_code == 200
    return click_id


async def _partner_headers(database: Database, programme: Programme) -> dict[str, str]:
    key = await create_api_key(database, programme.partner["id"])
    return {"Authorization": f"Bearer {key}"}


async def _messages(database: Database) -> list[OutboxMessage]:
    async with database.session() as session:
        return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def _make_due(database: Database) -> None:
    """Time passes: every pending message is due now."""
    async with database.writing() as connection:
        await connection.execute(
            update(OutboxMessage)
            .where(OutboxMessage.status == "pending")
            .values(next_at_ms=now_ms() - 1)
        )


async def test_a_conversion_fires_the_partners_postback_with_the_right_values(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    tracker: Receiver,
) -> None:
    partner = await _partner_headers(database, programme)
    template = (
        f"{tracker.url}/pb?cid={{sub1}}&payout={{commission}}&sale={{amount}}"
        "&cents={amount_minor}&cur={currency}&st={status}&ev={event}&oid={order_id}"
        "&clk={click_id}&conv={conversion_id}"
    )
    made = await client.post(
        f"/api/v1/partners/{programme.partner['id']}/postbacks",
        json={"url": template, "events": ["conversion.created", "conversion.status_changed"]},
        headers=partner,
    )
    assert made.status_code == 201, made.text
    postback = made.json()
    assert (postback["method"], postback["status"]) == ("GET", "active")

    click_id = await _sale(client, programme, "ORDER 1&x=y", sub1="blue widget")
    await consumer.drain()
    assert tracker.received == []  # nothing is sent inside the batch
    assert await deliver_due(database, LOOPBACK_ALLOWED) == 1

    (call,) = tracker.received
    assert call.method == "GET"
    query = parse_qs(urlsplit(call.path).query)
    async with database.session() as session:
        conversion = await session.scalar(select(Conversion))
    assert conversion is not None
    assert {name: values[0] for name, values in query.items()} == {
        "cid": "blue widget",
        "payout": "5.49",  # 10 % of 49.90 + 0.50 flat
        "sale": "49.90",
        "cents": "4990",
        "cur": "EUR",
        "st": "pending",
        "ev": "conversion.created",
        "oid": "ORDER 1&x=y",  # encoded into its one parameter
        "clk": click_id,
        "conv": str(conversion.id),
    }

    approved = await client.patch(
        f"/api/v1/conversions/{conversion.id}",
        json={"status": "approved"},
        headers=programme.headers,
    )
    assert approved.status_code == 200, approved.text
    assert await deliver_due(database, LOOPBACK_ALLOWED) == 1
    second = parse_qs(urlsplit(tracker.received[1].path).query)
    assert (second["st"], second["ev"]) == (["approved"], ["conversion.status_changed"])

    log = await client.get(
        f"/api/v1/partners/{programme.partner['id']}/postbacks/{postback['id']}/deliveries",
        headers=partner,
    )
    assert log.status_code == 200, log.text
    items = log.json()["items"]
    assert [(d["event"], d["status"], d["last_status_code"]) for d in items] == [
        ("conversion.status_changed", "delivered", 200),
        ("conversion.created", "delivered", 200),
    ]
    (attempt,) = items[1]["log"]
    assert (attempt["attempt"], attempt["ok"], attempt["status_code"]) == (1, True, 200)
    assert attempt["detail"] == "HTTP 200: ok"
    assert attempt["latency_ms"] >= 0


async def test_a_failing_partner_tracker_is_retried_then_receives_the_same_values(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    tracker: Receiver,
) -> None:
    made = await client.post(
        f"/api/v1/partners/{programme.partner['id']}/postbacks",
        json={"url": f"{tracker.url}/pb?cid={{click_id}}&payout={{commission}}"},
        headers=await _partner_headers(database, programme),
    )
    assert made.status_code == 201, made.text
    tracker.statuses = [502, 503]  # the partner's tracker is down for a while
    click_id = await _sale(client, programme, "ORDER-3")
    await consumer.drain()
    for _ in range(3):
        assert await deliver_due(database, LOOPBACK_ALLOWED) == 1
        await _make_due(database)
    (message,) = await _messages(database)
    assert (message.status, message.attempts, message.last_status_code) == ("delivered", 3, 200)
    assert [parse_qs(urlsplit(call.path).query) for call in tracker.received] == [
        {"cid": [click_id], "payout": ["5.49"]}
    ] * 3


async def test_a_failing_webhook_is_retried_then_delivered_with_the_same_id_and_verifies(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    receiver: Receiver,
) -> None:
    made = await client.post(
        "/api/v1/webhooks",
        json={
            "url": f"{receiver.url}/hooks",
            "events": ["conversion.created"],
            "merchant_id": programme.merchant["id"],
        },
        headers=programme.headers,
    )
    assert made.status_code == 201, made.text
    endpoint = made.json()
    assert endpoint["secret"].startswith("whsec_")
    listed = (await client.get("/api/v1/webhooks", headers=programme.headers)).json()
    assert listed["items"][0]["secret"] is None  # shown once

    receiver.statuses = [503, 500]
    await _sale(client, programme, "ORDER-2")
    await consumer.drain()
    before = now_ms()
    assert await deliver_due(database, LOOPBACK_ALLOWED) == 1
    (message,) = await _messages(database)
    assert (message.status, message.attempts, message.last_status_code) == ("pending", 1, 503)
    wait_ms = message.next_at_ms - before
    assert 0.8 * SCHEDULE_S[0] * 1000 <= wait_ms <= 1.2 * SCHEDULE_S[0] * 1000 + 1000
    assert await deliver_due(database, LOOPBACK_ALLOWED) == 0  # not due yet

    for _ in range(2):
        await _make_due(database)
        assert await deliver_due(database, LOOPBACK_ALLOWED) == 1
    (message,) = await _messages(database)
    assert (message.status, message.attempts) == ("delivered", 3)

    assert len(receiver.received) == 3
    ids = {call.headers["webhook-id"] for call in receiver.received}
    assert ids == {message.message_id}
    verifier = Webhook(endpoint["secret"])
    for call in receiver.received:
        payload = verifier.verify(call.body, call.headers)
        assert payload["type"] == "conversion.created"
        assert payload["data"]["order_id"] == "ORDER-2"
        assert (payload["data"]["amount"], payload["data"]["amount_minor"]) == ("49.90", 4990)
        assert payload["data"]["partner_id"] == programme.partner["id"]
    forged = dict(receiver.received[0].headers)
    with pytest.raises(Exception, match="signature"):
        Webhook(endpoint["secret"]).verify(receiver.received[0].body + b" ", forged)

    log = await client.get(
        f"/api/v1/webhooks/{endpoint['id']}/deliveries", headers=programme.headers
    )
    (delivery,) = log.json()["items"]
    assert [(a["attempt"], a["status_code"], a["ok"]) for a in delivery["log"]] == [
        (3, 200, True),
        (2, 500, False),
        (1, 503, False),
    ]
    assert delivery["log"][2]["detail"] == "HTTP 503: try later"

    # resend: the same id again; a rotated secret signs it
    rotated = await client.post(
        f"/api/v1/webhooks/{endpoint['id']}/rotate-secret", headers=programme.headers
    )
    assert rotated.json()["secret"] not in (None, endpoint["secret"])
    again = await client.post(
        f"/api/v1/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/resend",
        headers=programme.headers,
    )
    assert again.status_code == 202, again.text
    assert await deliver_due(database, LOOPBACK_ALLOWED) == 1
    last = receiver.received[-1]
    assert last.headers["webhook-id"] == message.message_id
    Webhook(rotated.json()["secret"]).verify(last.body, last.headers)
    with pytest.raises(Exception, match="signature"):
        Webhook(endpoint["secret"]).verify(last.body, last.headers)


async def test_a_message_fails_after_the_last_attempt_and_can_be_resent(
    client: AsyncTestClient[Any], programme: Programme, database: Database, receiver: Receiver
) -> None:
    made = await client.post(
        "/api/v1/webhooks",
        json={"url": f"{receiver.url}/hooks", "events": ["conversion.created"]},
        headers=programme.headers,
    )
    endpoint = made.json()
    test = await client.post(f"/api/v1/webhooks/{endpoint['id']}/test", headers=programme.headers)
    assert test.status_code == 202, test.text
    receiver.statuses = [500] * MAX_ATTEMPTS
    for _ in range(MAX_ATTEMPTS):
        await _make_due(database)
        assert await deliver_due(database, LOOPBACK_ALLOWED) == 1
    (message,) = await _messages(database)
    assert (message.status, message.attempts) == ("failed", MAX_ATTEMPTS)
    await _make_due(database)
    assert await deliver_due(database, LOOPBACK_ALLOWED) == 0
    payload = Webhook(endpoint["secret"]).verify(
        receiver.received[0].body, receiver.received[0].headers
    )
    assert payload["type"] == "webhook.test"

    resent = await client.post(
        f"/api/v1/webhooks/{endpoint['id']}/deliveries/{message.id}/resend",
        headers=programme.headers,
    )
    assert resent.json()["status"] == "pending"
    assert await deliver_due(database, LOOPBACK_ALLOWED) == 1
    (message,) = await _messages(database)
    assert message.status == "delivered"
    assert {call.headers["webhook-id"] for call in receiver.received} == {message.message_id}


async def test_a_private_target_is_refused_and_logged(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    receiver: Receiver,
) -> None:
    made = await client.post(
        "/api/v1/webhooks",
        json={"url": f"{receiver.url}/hooks", "events": ["conversion.created"]},
        headers=programme.headers,
    )
    assert made.status_code == 201
    await _sale(client, programme, "ORDER-3")
    await consumer.drain()
    assert await deliver_due(database) == 1  # no allow-list: only public addresses
    assert receiver.received == []
    (message,) = await _messages(database)
    assert message.status == "failed"  # a refusal is final
    async with database.session() as session:
        (attempt,) = (await session.scalars(select(DeliveryAttempt))).all()
    assert attempt.detail == "refused: 127.0.0.1 is a loopback address"
    assert attempt.status_code is None


async def test_a_dead_endpoint_does_not_slow_the_event_pipeline(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
) -> None:
    """An endpoint that accepts connections and never answers: the courier waits for it in a
    task of its own while batches of events are written as fast as ever."""
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(16)
    port = hanging.getsockname()[1]
    try:
        made = await client.post(
            "/api/v1/webhooks",
            json={"url": f"http://127.0.0.1:{port}/hooks", "events": ["conversion.created"]},
            headers=programme.headers,
        )
        assert made.status_code == 201
        await _sale(client, programme, "ORDER-4")
        await consumer.drain()
        courier = Courier(database, LOOPBACK_ALLOWED, poll_s=0.05, timeout_s=30)
        task = asyncio.create_task(courier.run())
        try:
            hanging.settimeout(5)
            connection, _ = await asyncio.to_thread(hanging.accept)  # the courier is waiting
            for number in range(50):
                await client.get(f"/c/{programme.link['code']}?sub1=n{number}")
            await _sale(client, programme, "ORDER-5")
            written = await consumer.drain()
            assert written >= 52
            # The events went in while the courier still waits for its first answer (30 s):
            # no attempt is recorded and the courier's task runs on.
            assert not task.done()
            async with database.session() as session:
                assert (await session.scalars(select(DeliveryAttempt))).all() == []
            async with database.session() as session:
                orders = set((await session.scalars(select(Conversion.order_id))).all())
            assert orders == {"ORDER-4", "ORDER-5"}
            messages = await _messages(database)
            assert [m.status for m in messages] == ["pending", "pending"]
            connection.close()
        finally:
            courier.stop()
            await asyncio.wait_for(task, 35)
    finally:
        hanging.close()


async def test_postbacks_are_checked_when_saved_and_kept_to_their_partner(
    client: AsyncTestClient[Any], programme: Programme, database: Database
) -> None:
    partner = await _partner_headers(database, programme)
    path = f"/api/v1/partners/{programme.partner['id']}/postbacks"
    unknown = await client.post(
        path, json={"url": "https://t.example/pb?x={clickid}"}, headers=partner
    )
    assert unknown.status_code == 400
    assert "{clickid}" in unknown.json()["extra"][0]["message"]
    in_host = await client.post(path, json={"url": "https://{sub1}.t.example/pb"}, headers=partner)
    assert in_host.status_code == 400
    assert "host" in in_host.json()["extra"][0]["message"]
    bad_event = await client.post(
        path, json={"url": "https://t.example/pb", "events": ["order.paid"]}, headers=partner
    )
    assert bad_event.status_code == 400
    made = await client.post(
        path, json={"url": "https://t.example/pb?c={click_id}", "method": "POST"}, headers=partner
    )
    assert made.status_code == 201, made.text
    postback = made.json()

    other = await client.post("/api/v1/partners", json={"name": "Other"}, headers=programme.headers)
    other_id = other.json()["id"]
    other_partner = {"Authorization": f"Bearer {await create_api_key(database, other_id)}"}
    assert (await client.get(path, headers=other_partner)).status_code == 404
    assert (
        await client.get(f"{path}/{postback['id']}/deliveries", headers=other_partner)
    ).status_code == 404
    assert (
        await client.post(f"{path}/{postback['id']}/test", headers=other_partner)
    ).status_code == 404
    wrong_parent = f"/api/v1/partners/{other_id}/postbacks/{postback['id']}"
    assert (await client.get(wrong_parent, headers=programme.headers)).status_code == 404
    listed = (await client.get(path, headers=partner)).json()["items"]
    assert [p["id"] for p in listed] == [postback["id"]]
    assert (await client.get("/api/v1/webhooks", headers=partner)).json()["items"] == []
    paused = await client.patch(
        f"{path}/{postback['id']}", json={"status": "paused"}, headers=partner
    )
    assert paused.json()["status"] == "paused"


async def test_a_post_postback_sends_the_values_as_a_form(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    tracker: Receiver,
) -> None:
    made = await client.post(
        f"/api/v1/partners/{programme.partner['id']}/postbacks",
        json={
            "url": f"{tracker.url}/pb?cid={{click_id}}",
            "method": "POST",
            "campaign_id": programme.campaign["id"],
        },
        headers=programme.headers,
    )
    assert made.status_code == 201, made.text
    click_id = await _sale(client, programme, "ORDER-6")
    await consumer.drain()
    assert await deliver_due(database, LOOPBACK_ALLOWED) == 1
    (call,) = tracker.received
    assert call.method == "POST"
    assert parse_qs(urlsplit(call.path).query)["cid"] == [click_id]
    form = parse_qs(call.body.decode())
    assert (form["commission"], form["sub1"], form["status"]) == (
        ["5.49"],
        ["sidebar"],
        ["pending"],
    )


async def test_no_endpoint_no_message_and_a_redelivered_batch_adds_none(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    tracker: Receiver,
) -> None:
    await _sale(client, programme, "ORDER-7")
    await consumer.drain()
    assert await _messages(database) == []
    await client.post(
        f"/api/v1/partners/{programme.partner['id']}/postbacks",
        json={"url": f"{tracker.url}/pb?c={{click_id}}"},
        headers=programme.headers,
    )
    await _sale(client, programme, "ORDER-8")
    await consumer.drain()
    assert len(await _messages(database)) == 1


def test_the_retry_schedule_starts_fast_and_spans_about_a_day() -> None:
    assert SCHEDULE_S[0] <= 5
    assert SCHEDULE_S[1] <= 60
    assert 20 * 3600 <= sum(SCHEDULE_S) <= 26 * 3600
    assert list(SCHEDULE_S) == sorted(SCHEDULE_S)
    rng = random.Random(7)
    delays = [retry_delay_ms(1, rng) for _ in range(200)]
    assert all(d is not None and 4000 <= d <= 6000 for d in delays)
    assert len(set(delays)) > 100  # jittered
    assert retry_delay_ms(MAX_ATTEMPTS) is None


def test_the_outbound_allow_list_has_one_name_and_reads_the_old_one() -> None:
    new = load_settings({"CLICKTRAIL_OUTBOUND_ALLOW": "10.0.0.0/8"})
    old = load_settings({"CLICKTRAIL_LINK_CHECK_ALLOW": "127.0.0.0/8"})
    assert new.outbound_allow == (ipaddress.ip_network("10.0.0.0/8"),)
    assert old.outbound_allow == old.link_check_allow == LOOPBACK_ALLOWED
    assert json.dumps(load_settings({}).outbound_allow) == "[]"


async def test_the_outgoing_pages_keep_each_partner_to_its_own_and_need_csrf(
    client: AsyncTestClient[Any],
    programme: Programme,
    database: Database,
    receiver: Receiver,
) -> None:
    other = await client.post("/api/v1/partners", json={"name": "Other"}, headers=programme.headers)
    other_id = other.json()["id"]
    theirs = await client.post(
        f"/api/v1/partners/{other_id}/postbacks",
        json={"url": "https://other-tracker.example/pb?c={click_id}"},
        headers=programme.headers,
    )
    hook = await client.post(
        "/api/v1/webhooks",
        json={"url": f"{receiver.url}/hooks", "events": ["conversion.created"]},
        headers=programme.headers,
    )
    anonymous = await client.get("/outgoing")
    assert (anonymous.status_code, anonymous.headers["location"]) == (302, "/login")
    await sign_in_partner(client, database, programme.partner["id"])

    hostile = "https://t.example/pb?c={click_id}&x=%22%3E<script>alert(1)</script>"
    form = {"url": hostile, "method": "GET", "events": "conversion.created"}
    assert (await client.post("/outgoing/postbacks", data=form)).status_code == 403  # no CSRF
    made = await submit(client, "/outgoing/postbacks", {**form, "partner_id": str(other_id)})
    assert made.status_code == 303
    async with database.session() as session:
        mine = (
            await session.scalars(select(PartnerPostback).where(PartnerPostback.url == hostile))
        ).one()
    assert mine.partner_id == programme.partner["id"]  # never another partner's

    page = await client.get("/outgoing")
    assert page.status_code == 200
    assert "other-tracker.example" not in page.text
    assert "&lt;script&gt;" in page.text
    assert "<script>alert(1)" not in page.text
    assert f"{receiver.url}/hooks" not in page.text  # the admin's endpoint is not the partner's
    assert (await client.get(f"/outgoing/postbacks/{theirs.json()['id']}")).status_code == 404
    assert (await client.get(f"/outgoing/webhooks/{hook.json()['id']}")).status_code == 404
    refused = [
        f"/outgoing/postbacks/{theirs.json()['id']}/test",
        f"/outgoing/webhooks/{hook.json()['id']}/test",
        f"/outgoing/webhooks/{hook.json()['id']}/rotate",
    ]
    for path in refused:
        assert (await submit(client, path, {})).status_code in (403, 404), path
    assert (await submit(client, f"/outgoing/postbacks/{mine.id}/test", {})).status_code == 303
    assert await deliver_due(database) == 1  # t.example does not resolve: logged as such
    log = await client.get(f"/outgoing/postbacks/{mine.id}")
    assert log.status_code == 200
    assert "webhook.test" in log.text
    (message,) = [m for m in await _messages(database) if m.postback_id == mine.id]
    resent = await submit(client, f"/outgoing/deliveries/{message.id}/resend", {})
    assert resent.status_code == 303
    assert (await client.get("/outgoing/webhooks/0")).status_code in (403, 404)
    for path in (f"/outgoing/webhooks/{2**40}", f"/outgoing/postbacks/{2**40}"):
        assert (await client.get(path)).status_code == 404, path  # never sent to the database


async def test_an_admin_makes_a_webhook_on_the_page_and_sees_its_secret_once(
    client: AsyncTestClient[Any], programme: Programme, database: Database, receiver: Receiver
) -> None:
    await sign_in(client, database)
    form = {"url": f"{receiver.url}/hooks", "events": "conversion.created", "merchant_id": ""}
    made = await submit(client, "/outgoing/webhooks", form)
    assert made.status_code in (200, 201), made.text
    secret = re.search(r'value="(whsec_[^"]+)"', made.text)
    assert secret is not None
    async with database.session() as session:
        endpoint = (await session.scalars(select(WebhookEndpoint))).one()
    assert endpoint.secret == secret.group(1)
    page = await client.get(f"/outgoing/webhooks/{endpoint.id}")
    assert secret.group(1) not in page.text
    assert (await submit(client, f"/outgoing/webhooks/{endpoint.id}/test", {})).status_code == 303
    assert await deliver_due(database, LOOPBACK_ALLOWED) == 1
    Webhook(secret.group(1)).verify(receiver.received[0].body, receiver.received[0].headers)
    page = await client.get(f"/outgoing/webhooks/{endpoint.id}")
    assert "HTTP 200: ok" in page.text
    bad = await submit(client, "/outgoing/webhooks", {**form, "url": "ftp://x.example/"})
    assert bad.status_code == 400
    assert "url" in bad.text


async def test_a_sale_replaced_by_the_signed_postback_tells_the_partner_it_now_belongs_to(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    tracker: Receiver,
    receiver: Receiver,
) -> None:
    """A pixel credits a thief's click; the merchant's signed postback names the buyer's: the
    rightful partner's tracker hears ``conversion.updated`` with the replaced figures."""
    thief, thiefs_link = await add_partner_with_link(client, programme, "Thief")
    events = ["conversion.created", "conversion.updated"]
    for partner_id in (programme.partner["id"], thief["id"]):
        made = await client.post(
            f"/api/v1/partners/{partner_id}/postbacks",
            json={
                "url": f"{tracker.url}/pb/{partner_id}?ev={{event}}&c={{commission}}",
                "events": events,
            },
            headers=programme.headers,
        )
        assert made.status_code == 201, made.text
    buyers_click = await follow_link(client, programme.link["code"])
    thiefs_click = await follow_link(client, thiefs_link["code"])
    await client.get(
        "/p.gif",
        params={
            "m": programme.merchant["key"],
            "oid": "ORD-9",
            "amt": "9999.00",
            "clk": thiefs_click,
        },
    )
    await consumer.drain()
    response = await send(client, programme, sale("ORD-9", "49.90", click_id=buyers_click))
    assert response.status_code == 202, response.text
    await consumer.drain()
    assert await deliver_due(database, LOOPBACK_ALLOWED) == 2
    calls = sorted(call.path for call in tracker.received)
    assert calls == [
        f"/pb/{programme.partner['id']}?ev=conversion.updated&c=5.49",
        f"/pb/{thief['id']}?ev=conversion.created&c=1000.40",
    ]


async def test_retention_deletes_finished_messages_and_their_attempts_and_keeps_pending_ones(
    database: Database, redis: Any
) -> None:
    old = now_ms() - 100 * 86_400_000
    async with database.writing() as connection:
        for number, (status, created) in enumerate(
            [("delivered", old), ("failed", old), ("pending", old), ("delivered", now_ms())]
        ):
            await connection.execute(
                insert(OutboxMessage),
                [
                    {
                        "message_id": f"msg_{number}",
                        "event": "webhook.test",
                        "payload": "{}",
                        "status": status,
                        "attempts": 1,
                        "next_at_ms": created,
                        "created_ms": created,
                    }
                ],
            )
            await connection.execute(
                insert(DeliveryAttempt),
                [
                    {
                        "outbox_id": number + 1,
                        "at_ms": created,
                        "attempt": 1,
                        "ok": status == "delivered",
                        "latency_ms": 3,
                        "detail": "HTTP 200",
                    }
                ],
            )
    deleted = await purge_expired(database, redis, retention_days=90)
    assert deleted == 4
    left = await _messages(database)
    assert [m.message_id for m in left] == ["msg_2", "msg_3"]
    async with database.session() as session:
        attempts = (await session.scalars(select(DeliveryAttempt.outbox_id))).all()
    assert sorted(attempts) == [3, 4]


async def test_a_partners_own_webhook_hears_its_conversions_only(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    receiver: Receiver,
) -> None:
    partner = await _partner_headers(database, programme)
    made = await client.post(
        "/api/v1/webhooks",
        json={"url": f"{receiver.url}/mine", "events": ["conversion.created"]},
        headers=partner,
    )
    assert made.status_code == 201, made.text
    endpoint = made.json()
    assert endpoint["partner_id"] == programme.partner["id"]
    assert endpoint["secret"].startswith("whsec_")
    for_a_shop = await client.post(
        "/api/v1/webhooks",
        json={"url": f"{receiver.url}/x", "events": ["conversion.created"], "merchant_id": 1},
        headers=partner,
    )
    assert for_a_shop.status_code == 400
    admins = await client.post(
        "/api/v1/webhooks",
        json={"url": f"{receiver.url}/all", "events": ["conversion.created"]},
        headers=programme.headers,
    )
    listed = (await client.get("/api/v1/webhooks", headers=partner)).json()["items"]
    assert [hook["id"] for hook in listed] == [endpoint["id"]]
    admin_hook = f"/api/v1/webhooks/{admins.json()['id']}"
    for path in (admin_hook, f"{admin_hook}/deliveries", f"/api/v1/webhooks/{2**31 - 1}"):
        assert (await client.get(path, headers=partner)).status_code == 404, path
    assert (await client.post(f"{admin_hook}/rotate-secret", headers=partner)).status_code == 404

    other = await client.post("/api/v1/partners", json={"name": "Other"}, headers=programme.headers)
    other_link = await client.post(
        "/api/v1/links",
        json={"partner_id": other.json()["id"], "campaign_id": programme.campaign["id"]},
        headers=programme.headers,
    )
    other_key = {"Authorization": f"Bearer {await create_api_key(database, other.json()['id'])}"}
    assert (
        await client.get(f"/api/v1/webhooks/{endpoint['id']}", headers=other_key)
    ).status_code == 404

    await _sale(client, programme, "MINE-1")
    click_id = await follow_link(client, other_link.json()["code"])
    await client.get(
        "/p.gif",
        params={"m": programme.merchant["key"], "oid": "THEIRS-1", "amt": "20.00", "clk": click_id},
    )
    await consumer.drain()
    messages = await _messages(database)
    mine = [m for m in messages if m.webhook_id == endpoint["id"]]
    everyone = [m for m in messages if m.webhook_id == admins.json()["id"]]
    assert [json.loads(m.payload)["data"]["order_id"] for m in mine] == ["MINE-1"]
    assert sorted(json.loads(m.payload)["data"]["order_id"] for m in everyone) == [
        "MINE-1",
        "THEIRS-1",
    ]
