"""Conversion sources end to end: the app served on a loopback port, a network playing a real
HTTP client that sends its GET postback with its own field names, through Redis and the worker;
a duplicate, a status change, a wrong token, an address outside the allow-list, bad input, the
management API (token shown once, stored hashed, rotated) and the per-source report."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from backend.core.clock import HOUR_MS, now_ms
from backend.core.settings import Settings
from backend.domain.events import NetworkEvent, Source, encode_event
from backend.storage.db.engine import Database
from backend.storage.db.models import (
    Conversion,
    ConversionChange,
    ConversionSource,
    OutboxMessage,
    RejectedEventRow,
    StatsHourly,
)
from backend.storage.streams.entries import encode_entry
from backend.web.app import create_app
from backend.worker.consumer import StreamConsumer
from backend.worker.main import weekly_sources_job, worker_options
from backend.worker.scheduled_reports import last_week
from tests.support import (
    BROWSER_HEADERS,
    Programme,
    add_partner_with_link,
    create_api_key,
    create_programme,
    follow_link,
    queued_conversion,
    sign_in,
)
from tests.test_admin import sign_in_partner, submit

# An Awin-style programme: the network takes our click id in its own ``clickref`` and reports
# sales back with ``clickref``, ``txid``, ``sale``, ``payout``, ``cur`` and a numeric status.
NETWORK_DESTINATION = "https://network.example/cread.php?mid=1001&clickref={click_id}"
NETWORK_SOURCE = {
    "name": "Network",
    "fields": {
        "click_id": "clickref",
        "order_id": "txid",
        "amount": "sale",
        "commission": "payout",
        "currency": "cur",
        "status": "status",
    },
    "statuses": {"1": "approved", "0": "pending", "2": "rejected"},
}


@pytest.fixture
async def served(settings: Settings, redis: Any) -> AsyncIterator[str]:
    """The whole app (ingest in front, as in production) on a loopback port: its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task
    sock.close()


@pytest.fixture
async def web(served: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served, follow_redirects=False) as session:
        yield session


async def network_programme(web: httpx.AsyncClient, database: Database) -> Programme:
    headers = {"Authorization": f"Bearer {await create_api_key(database)}"}
    return await create_programme(web, headers, destination_url=NETWORK_DESTINATION)


async def create_source(
    web: httpx.AsyncClient, programme: Programme, **extra: Any
) -> dict[str, Any]:
    body = {"merchant_id": programme.merchant["id"], **NETWORK_SOURCE, **extra}
    response = await web.post("/api/v1/sources", json=body, headers=programme.headers)
    assert response.status_code == 201, response.text
    source: dict[str, Any] = response.json()
    return source


async def click_through_network(web: httpx.AsyncClient, programme: Programme) -> str:
    """A visitor's click: the redirect goes to the network with our click id in ``clickref``."""
    response = await web.get(f"/c/{programme.link['code']}", headers=BROWSER_HEADERS)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith("https://network.example/cread.php?mid=1001&clickref=")
    return location.rsplit("clickref=", 1)[1]


async def conversion(database: Database, order_id: str) -> Conversion:
    async with database.session() as session:
        found = await session.scalar(select(Conversion).where(Conversion.order_id == order_id))
    assert found is not None
    return found


async def history(database: Database, conversion_id: int) -> list[tuple[str, str, str]]:
    async with database.session() as session:
        rows = await session.scalars(
            select(ConversionChange)
            .where(ConversionChange.conversion_id == conversion_id)
            .order_by(ConversionChange.id)
        )
        return [(row.from_status, row.to_status, row.actor) for row in rows]


async def rejections(database: Database) -> list[tuple[str, str, str]]:
    async with database.session() as session:
        rows = await session.scalars(select(RejectedEventRow).order_by(RejectedEventRow.id))
        return [(row.source, row.reason, row.detail) for row in rows]


async def stats_conversions(database: Database) -> tuple[int, int, int]:
    async with database.session() as session:
        rows = (await session.scalars(select(StatsHourly))).all()
    return (
        sum(row.conversions for row in rows),
        sum(row.revenue_minor for row in rows),
        sum(row.commission_minor for row in rows),
    )


async def test_a_networks_get_postback_with_its_own_names_a_duplicate_and_a_status_change(
    web: httpx.AsyncClient, consumer: StreamConsumer, database: Database
) -> None:
    programme = await network_programme(web, database)
    source = await create_source(web, programme)
    token = source["token"]
    click_id = await click_through_network(web, programme)
    async with httpx.AsyncClient(base_url=str(web.base_url)) as network:
        params = {
            "clickref": click_id,
            "txid": "AW-1",
            "sale": "49.90",
            "payout": "3.50",
            "cur": "EUR",
            "status": "0",
        }
        first = await network.get(f"/pb/{token}", params=params)
        assert first.status_code == 200, first.text
        assert first.json()["queued"] is True
        await consumer.drain()

        stored = await conversion(database, "AW-1")
        assert (stored.source, stored.source_id, stored.verified, stored.status) == (
            "network",
            source["id"],
            True,
            "pending",
        )
        assert (stored.click_id, stored.partner_id) == (click_id, programme.partner["id"])
        # The network's commission (3.50), not the campaign's rule (10 % + 0.50 = 5.49).
        assert (stored.amount_minor, stored.commission_minor) == (4990, 350)
        assert stored.commission_reported is True
        assert await stats_conversions(database) == (1, 4990, 350)

        # The network sends it again: success, nothing queued, nothing changed.
        again = await network.get(f"/pb/{token}", params=params)
        assert again.status_code == 200
        assert again.json() == {"ok": True, "duplicate": True}
        assert await consumer.drain() == 0

        # Approved, then declined: pending -> approved -> reversed, each with an audit row.
        approved = await network.get(f"/pb/{token}", params={**params, "status": "1"})
        assert approved.json()["queued"] is True
        await consumer.drain()
        declined = await network.get(f"/pb/{token}", params={"txid": "AW-1", "status": "2"})
        assert declined.json()["queued"] is True
        await consumer.drain()

    stored = await conversion(database, "AW-1")
    assert stored.status == "reversed"
    assert (stored.amount_minor, stored.commission_minor) == (4990, 350)  # figures untouched
    actor = f"source:{source['id']}"
    assert await history(database, stored.id) == [
        ("pending", "approved", actor),
        ("approved", "reversed", actor),
    ]
    assert await stats_conversions(database) == (0, 0, 0)  # reversed: no longer counted
    assert await rejections(database) == []  # a duplicate is no refusal

    # The management API shows which commission is the network's.
    response = await web.get(f"/api/v1/conversions/{stored.id}", headers=programme.headers)
    assert response.status_code == 200, response.text
    assert (response.json()["source_id"], response.json()["commission_reported"]) == (
        source["id"],
        True,
    )


async def test_a_post_form_and_a_json_postback_and_a_first_postback_already_approved(
    web: httpx.AsyncClient, consumer: StreamConsumer, database: Database
) -> None:
    programme = await network_programme(web, database)
    token = (await create_source(web, programme))["token"]
    form = {"txid": "F-1", "sale": "10", "status": "1"}  # no commission: the rule's
    assert (await web.post(f"/pb/{token}", data=form)).status_code == 200
    body = {"txid": "J-1", "sale": 20.5, "payout": 2, "cur": "eur"}
    assert (await web.post(f"/pb/{token}", json=body)).status_code == 200
    await consumer.drain()

    formed = await conversion(database, "F-1")
    assert (formed.status, formed.amount_minor, formed.commission_reported) == (
        "approved",
        1000,
        False,
    )
    assert formed.partner_id is None  # no click id: unattributed, as reported
    assert [change[:2] for change in await history(database, formed.id)] == [
        ("pending", "approved")
    ]
    posted = await conversion(database, "J-1")
    assert (posted.amount_minor, posted.commission_minor, posted.currency) == (2050, 200, "EUR")
    assert posted.status == "pending"


async def test_a_wrong_token_an_outside_address_and_bad_input_are_refused_and_kept(
    web: httpx.AsyncClient, consumer: StreamConsumer, database: Database
) -> None:
    programme = await network_programme(web, database)
    open_source = await create_source(web, programme)
    fenced = await create_source(web, programme, name="Fenced", allow_ips=["203.0.113.0/24"])

    wrong = await web.get("/pb/src_not-a-token", params={"txid": "W-1", "sale": "1"})
    assert wrong.status_code == 404
    outside = await web.get(f"/pb/{fenced['token']}", params={"txid": "W-2", "sale": "1"})
    assert outside.status_code == 403
    no_txid = await web.get(f"/pb/{open_source['token']}", params={"sale": "1"})
    assert no_txid.status_code == 400
    assert no_txid.json()["extra"] == [{"key": "txid", "message": "the transaction id is required"}]
    bad_amount = await web.get(f"/pb/{open_source['token']}", params={"txid": "B", "sale": "x"})
    assert bad_amount.status_code == 400
    assert bad_amount.json()["extra"][0]["key"] == "sale"
    odd_status = await web.get(f"/pb/{open_source['token']}", params={"txid": "S", "status": "9"})
    assert odd_status.status_code == 400
    await consumer.drain()

    kept = await rejections(database)
    assert [(source, reason) for source, reason, _ in kept] == [
        ("network", "unknown_source"),
        ("network", "ip_not_allowed"),
        ("network", "missing_field"),
        ("network", "invalid_amount"),
        ("network", "unknown_status"),
    ]
    assert "127.0.0.1" in kept[1][2]
    async with database.session() as session:
        assert (await session.scalars(select(Conversion))).all() == []

    # An allow-list that holds the caller's address lets the postback in.
    patched = await web.patch(
        f"/api/v1/sources/{fenced['id']}",
        json={"allow_ips": ["127.0.0.1"]},
        headers=programme.headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["allow_ips"] == ["127.0.0.1/32"]
    allowed = await web.get(f"/pb/{fenced['token']}", params={"txid": "W-2", "sale": "1"})
    assert allowed.status_code == 200, allowed.text


async def test_a_status_the_rules_refuse_changes_nothing_and_is_kept(
    web: httpx.AsyncClient, consumer: StreamConsumer, database: Database
) -> None:
    programme = await network_programme(web, database)
    token = (await create_source(web, programme))["token"]
    await web.get(f"/pb/{token}", params={"txid": "R-1", "sale": "5", "status": "2"})
    await consumer.drain()
    await web.get(f"/pb/{token}", params={"txid": "R-1", "status": "1"})  # rejected -> approved
    await consumer.drain()
    stored = await conversion(database, "R-1")
    assert stored.status == "rejected"
    assert [reason for _, reason, _ in await rejections(database)] == ["status_refused"]


async def test_the_token_is_shown_once_stored_hashed_and_rotated(
    web: httpx.AsyncClient, consumer: StreamConsumer, database: Database
) -> None:
    programme = await network_programme(web, database)
    source = await create_source(web, programme, preset="keitaro", fields=None, statuses=None)
    token = source["token"]
    assert token.startswith("src_")
    assert source["fields"]["click_id"] == "subid"
    assert source["statuses"]["sale"] == "approved"
    read = await web.get(f"/api/v1/sources/{source['id']}", headers=programme.headers)
    assert read.json()["token"] is None
    assert token not in read.text
    async with database.session() as session:
        row = await session.get(ConversionSource, source["id"])
    assert row is not None
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()

    rotated = await web.post(
        f"/api/v1/sources/{source['id']}/rotate-token", headers=programme.headers
    )
    assert rotated.status_code == 200, rotated.text
    new_token = rotated.json()["token"]
    assert new_token != token
    old = await web.get(f"/pb/{token}", params={"tid": "K-1", "status": "sale"})
    assert old.status_code == 404
    new = await web.get(f"/pb/{new_token}", params={"tid": "K-1", "status": "sale"})
    assert new.status_code == 200

    listed = await web.get(
        "/api/v1/sources",
        params={"merchant_id": programme.merchant["id"]},
        headers=programme.headers,
    )
    assert [item["id"] for item in listed.json()["items"]] == [source["id"]]
    deleted = await web.delete(f"/api/v1/sources/{source['id']}", headers=programme.headers)
    assert deleted.status_code == 204
    gone = await web.get(f"/pb/{new_token}", params={"tid": "K-2"})
    assert gone.status_code == 404


async def test_sources_are_for_admin_keys_only(
    client: AsyncTestClient[Any], programme: Programme, database: Database
) -> None:
    partner_key = await create_api_key(database, programme.partner["id"])
    headers = {"Authorization": f"Bearer {partner_key}"}
    for method, path in (
        ("GET", "/api/v1/sources"),
        ("POST", "/api/v1/sources"),
        ("GET", "/api/v1/sources/1"),
        ("POST", "/api/v1/sources/1/rotate-token"),
        ("DELETE", "/api/v1/sources/1"),
    ):
        response = await client.request(method, path, headers=headers, json={})
        assert response.status_code == 403, (method, path, response.text)


async def test_unknown_status_names_and_bad_mappings_are_refused_by_the_api(
    client: AsyncTestClient[Any], programme: Programme
) -> None:
    body = {
        "merchant_id": programme.merchant["id"],
        "name": "N",
        "statuses": {"1": "paid"},
    }
    refused = await client.post("/api/v1/sources", json=body, headers=programme.headers)
    assert refused.status_code == 400
    bad_ip = {"merchant_id": programme.merchant["id"], "name": "N", "allow_ips": ["1.2.3.999"]}
    refused = await client.post("/api/v1/sources", json=bad_ip, headers=programme.headers)
    assert refused.status_code == 400
    assert refused.json()["extra"][0]["key"] == "allow_ips"
    missing = {"merchant_id": 99999, "name": "N"}
    refused = await client.post("/api/v1/sources", json=missing, headers=programme.headers)
    assert refused.status_code == 400


async def test_admin_pages_create_show_the_url_once_edit_rotate_and_delete(
    client: AsyncTestClient[Any], programme: Programme, database: Database
) -> None:
    await sign_in(client, database)
    form = {
        "name": "Keitaro <b>",
        "merchant_id": str(programme.merchant["id"]),
        "preset": "keitaro",
        "field_order_id": "",
        "statuses": "",
        "allow_ips": "203.0.113.0/24",
    }
    created = await submit(client, "/admin/sources/new", form)
    assert created.status_code == 200, created.text
    assert created.headers["cache-control"] == "no-store"
    match = re.search(r'value="http://testserver.local/pb/(src_[^"]+)"', created.text)
    assert match is not None, created.text
    token = match.group(1)
    async with database.session() as session:
        source = await session.scalar(select(ConversionSource))
    assert source is not None
    assert source.fields["click_id"] == "subid"  # from the preset
    assert source.fields["order_id"] == "txid"  # typed in the form (its default), kept
    assert source.statuses["sale"] == "approved"
    assert source.token_hash == hashlib.sha256(token.encode()).hexdigest()

    page = await client.get(f"/admin/sources/{source.id}")
    assert page.status_code == 200
    assert token not in page.text
    assert "Keitaro &lt;b&gt;" in page.text  # escaped
    listing = await client.get("/admin/sources")
    assert f'href="/admin/sources/{source.id}"' in listing.text

    edit = {
        "name": "Keitaro",
        "field_order_id": "tid",
        "field_click_id": "subid",
        "field_status": "status",
        "statuses": "lead=pending\nsale=approved\nrejected=rejected",
        "allow_ips": "",
    }
    saved = await submit(client, f"/admin/sources/{source.id}", edit)
    assert saved.status_code == 303, saved.text
    bad = await submit(client, f"/admin/sources/{source.id}", {**edit, "statuses": "1=paid"})
    assert bad.status_code == 400
    async with database.session() as session:
        source = await session.get(ConversionSource, source.id)
    assert source is not None
    assert (source.name, source.fields["order_id"], source.allow_ips) == ("Keitaro", "tid", [])

    rotated = await submit(client, f"/admin/sources/{source.id}/rotate-token", {})
    assert rotated.status_code == 200
    assert token not in rotated.text
    assert (await client.get(f"/pb/{token}", params={"tid": "A"})).status_code == 404
    forged = await client.post(f"/admin/sources/{source.id}/delete", data={"_csrf_token": "x"})
    assert forged.status_code == 403
    deleted = await submit(client, f"/admin/sources/{source.id}/delete", {})
    assert deleted.status_code == 303
    async with database.session() as session:
        assert await session.get(ConversionSource, source.id) is None


async def test_the_per_source_report_in_the_stats_api_the_page_and_csv_within_scope(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    other, other_link = await add_partner_with_link(client, programme, "Other blog")
    body = {"merchant_id": programme.merchant["id"], **NETWORK_SOURCE}
    created = await client.post("/api/v1/sources", json=body, headers=programme.headers)
    source, token = created.json(), created.json()["token"]
    own_click = await follow_link(client, programme.link["code"])
    await follow_link(client, programme.link["code"], {**BROWSER_HEADERS, "User-Agent": "Firefox"})
    other_click = await follow_link(client, other_link["code"])
    await consumer.drain()  # the clicks first: a conversion too close to its click is held
    sales = [
        {"clickref": own_click, "txid": "N-1", "sale": "49.90", "payout": "3.50"},
        {"clickref": other_click, "txid": "N-2", "sale": "10.00", "payout": "1.00", "status": "1"},
    ]
    for sale in sales:
        assert (await client.get(f"/pb/{token}", params=sale)).status_code == 200
    pixel = {"m": programme.merchant["key"], "oid": "PIXEL-1", "amt": "5.00", "clk": own_click}
    await client.get("/p.gif", params=pixel)
    await consumer.drain()

    report = (await client.get("/api/v1/stats?group_by=source", headers=programme.headers)).json()
    (row,) = report["rows"]
    assert row["key"] == source["id"]
    figures = row["totals"]
    assert (figures["conversions"], figures["revenue_minor"], figures["commission_minor"]) == (
        2,
        5990,
        450,
    )
    assert figures["verified_conversions"] == 2
    assert report["totals"]["conversions"] == 3  # the pixel's too: the plain totals
    clicks = report["totals"]["clicks"]
    assert figures["clicks"] == clicks >= 2  # the merchant's clicks
    partner_key = await create_api_key(database, programme.partner["id"])
    mine = await client.get(
        "/api/v1/stats?group_by=source", headers={"Authorization": f"Bearer {partner_key}"}
    )
    (own,) = mine.json()["rows"]
    assert (own["totals"]["conversions"], own["totals"]["revenue_minor"]) == (1, 4990)
    assert own["totals"]["clicks"] < figures["clicks"]

    await sign_in(client, database)
    async with database.session() as session:
        reported = await session.scalar(select(Conversion.id).where(Conversion.order_id == "N-1"))
    shown = await client.get(f"/conversions/{reported}")
    assert "€3.50 (reported by the network)" in shown.text
    page = await client.get("/sources", params={"range": "7d"})
    assert page.status_code == 200
    assert "Network · Shop" in page.text
    table = list(
        csv.DictReader(io.StringIO((await client.get("/sources?range=7d&format=csv")).text))
    )
    assert [(r["day"], r["conversions"], r["revenue EUR"], r["aov EUR"]) for r in table] == [
        ("total", "2", "59.90", "29.95"),
        (datetime.now(UTC).strftime("%Y-%m-%d"), "2", "59.90", "29.95"),
    ]
    assert table[0]["commission EUR"] == "4.50"
    await client.post("/logout", data={"_csrf_token": client.cookies.get("csrftoken")})
    client.cookies.clear()
    await sign_in_partner(client, database, other["id"])
    theirs = list(
        csv.DictReader(io.StringIO((await client.get("/sources?range=7d&format=csv")).text))
    )
    assert [(r["day"], r["conversions"], r["revenue EUR"]) for r in theirs] == [
        ("total", "1", "10.00"),
        (datetime.now(UTC).strftime("%Y-%m-%d"), "1", "10.00"),
    ]


async def test_the_worker_writes_last_weeks_network_report_under_var_reports(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    redis: Any,
    settings: Settings,
) -> None:
    body = {"merchant_id": programme.merchant["id"], **NETWORK_SOURCE}
    source = (await client.post("/api/v1/sources", json=body, headers=programme.headers)).json()
    start_ms, end_ms, name = last_week(now_ms())
    for order_id, at_ms in (("LW-1", start_ms + HOUR_MS), ("THIS-WEEK", end_ms + HOUR_MS)):
        sale = msgspec.structs.replace(
            queued_conversion(programme.merchant["id"], order_id, 2000),
            at_ms=at_ms,
            source=Source.NETWORK,
        )
        event = NetworkEvent(sale=sale, source_id=source["id"], commission_minor=150, status="")
        await redis.xadd(settings.stream, {"e": encode_entry([encode_event(event)])})
    await consumer.drain()

    written = Path(await weekly_sources_job({"settings": settings, "database": database}))
    assert written == settings.var_dir / "reports" / f"sources-{name}.csv"
    mode = (await asyncio.to_thread(written.stat)).st_mode
    assert mode & 0o777 == 0o600
    table = list(csv.DictReader(io.StringIO(await asyncio.to_thread(written.read_text))))
    day = datetime.fromtimestamp(start_ms / 1000, UTC).strftime("%Y-%m-%d")
    assert [(r["source"], r["day"], r["conversions"], r["commission EUR"]) for r in table] == [
        ("Network", "total", "1", "1.50"),
        ("Network", day, "1", "1.50"),
    ]
    jobs = {job.name: job for job in worker_options(settings, settings.redis_url)["cron_jobs"]}
    weekly = jobs["cron:weekly_sources_job"]
    assert (weekly.unique, weekly.weekday, weekly.hour) == (True, {0}, {5})


async def test_the_access_log_keeps_only_the_tokens_hint(
    client: AsyncTestClient[Any], programme: Programme, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"merchant_id": programme.merchant["id"], **NETWORK_SOURCE}
    token = (await client.post("/api/v1/sources", json=body, headers=programme.headers)).json()[
        "token"
    ]
    with caplog.at_level(logging.INFO):
        assert (await client.get(f"/pb/{token}", params={"txid": "L-1"})).status_code == 200
    ours = [r for r in caplog.records if r.name == "clicktrail.access"]  # not the client's own
    logged = [record.getMessage() for record in ours if "/pb/" in record.getMessage()]
    assert logged, caplog.text
    assert all(token not in record.getMessage() for record in ours)
    assert f"/pb/{token[:10]}…" in logged[0]


async def test_a_networks_status_change_owes_the_partners_postback_its_message(
    web: httpx.AsyncClient, consumer: StreamConsumer, database: Database
) -> None:
    """The worker's status change for a network (not ``change_status``) writes the outbox
    messages in the same transaction, with the status it left."""
    programme = await network_programme(web, database)
    source = await create_source(web, programme)
    hook = await web.post(
        f"/api/v1/partners/{programme.partner['id']}/postbacks",
        json={
            "url": "https://tracker.example/pb?cid={click_id}&s={status}",
            "events": ["conversion.created", "conversion.status_changed"],
        },
        headers=programme.headers,
    )
    assert hook.status_code == 201, hook.text
    click_id = await click_through_network(web, programme)
    params = {"clickref": click_id, "txid": "AW-9", "sale": "10", "cur": "EUR", "status": "0"}
    for status in ("0", "1"):
        response = await web.get(f"/pb/{source['token']}", params={**params, "status": status})
        assert response.json()["queued"] is True
        await consumer.drain()
    stored = await conversion(database, "AW-9")
    async with database.session() as session:
        messages = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
    assert [(m.event, m.conversion_id) for m in messages] == [
        ("conversion.created", stored.id),
        ("conversion.status_changed", stored.id),
    ]
    changed = json.loads(messages[1].payload)
    assert (changed["status"], changed["previous_status"]) == ("approved", "pending")
