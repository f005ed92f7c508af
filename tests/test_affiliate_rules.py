"""The programme's rules through real HTTP, Redis and the worker: click ids and the attribution
window, partner status, commission overrides, batch status changes with their audit trail,
auto-approval, the verified/unverified split, and commission math across currencies."""

from __future__ import annotations

from dataclasses import replace
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from backend.core.clock import DAY_MS, now_ms
from backend.core.ids import ClickIdSigner, new_event_id
from backend.core.money import MINOR_DIGITS, commission_minor, format_minor, parse_amount
from backend.core.settings import Settings
from backend.domain.affiliate.auto_approval import approve_due
from backend.domain.events import ConversionEvent, Source
from backend.storage.catalog import LinkInfo
from backend.storage.db.engine import Database
from backend.storage.db.models import Click, Conversion, ConversionChange
from backend.worker.consumer import StreamConsumer
from backend.worker.main import auto_approve_job, worker_options
from backend.worker.steps.attribute import ConversionFacts
from backend.worker.steps.price import put_commission
from tests.postback_support import sale, send
from tests.support import (
    SECRET,
    Programme,
    add_partner_with_link,
    create_api_key,
    follow_link,
    post_json,
)


async def pixel(
    client: AsyncTestClient[Any],
    programme: Programme,
    order_id: str,
    amount: str,
    click_id: str = "",
) -> None:
    params = {"m": programme.merchant["key"], "oid": order_id, "amt": amount, "clk": click_id}
    assert (await client.get("/p.gif", params=params)).status_code == 200


async def conversions(database: Database) -> dict[str, Conversion]:
    async with database.session() as session:
        return {c.order_id or "": c for c in await session.scalars(select(Conversion))}


async def test_forged_expired_and_future_click_ids_leave_the_conversion_unattributed(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    signer, link_id, now = ClickIdSigner(SECRET), programme.link["id"], now_ms()
    window_ms = 30 * DAY_MS  # the default attribution window
    genuine = signer.issue(link_id, now)
    cases = {
        "forged": ClickIdSigner("another-secret-key-of-enough-length-000").issue(link_id, now),
        "tampered": genuine[:-3] + ("AAA" if genuine[-3:] != "AAA" else "BBB"),
        "just-inside": signer.issue(link_id, now - window_ms + 60_000),
        "just-outside": signer.issue(link_id, now - window_ms - 60_000),
        "future": signer.issue(link_id, now + 5 * 60_000),
    }
    for order_id, click_id in cases.items():
        await pixel(client, programme, order_id, "100.00", click_id)
    await consumer.drain()

    stored = await conversions(database)
    outcome = {
        order_id: (c.link_id, c.commission_minor, c.flags.split(",")[0])
        for order_id, c in stored.items()
    }
    assert outcome == {
        "forged": (None, 0, "invalid_click_id"),
        "tampered": (None, 0, "invalid_click_id"),
        "just-inside": (link_id, 1050, "click_missing"),  # attributed; no click row to check
        "just-outside": (None, 0, "click_outside_window"),
        "future": (None, 0, "click_outside_window"),
    }


async def test_banned_partners_earlier_clicks_earn_nothing_and_paused_waits(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    paused, paused_link = await add_partner_with_link(client, programme, "Paused")
    banned_click = await follow_link(client, programme.link["code"])  # before the ban
    for partner_id, status in ((programme.partner["id"], "banned"), (paused["id"], "paused")):
        response = await client.patch(
            f"/api/v1/partners/{partner_id}", json={"status": status}, headers=programme.headers
        )
        assert response.json()["status"] == status
    paused_click = await follow_link(client, paused_link["code"])
    await pixel(client, programme, "BANNED", "100.00", banned_click)
    await pixel(client, programme, "PAUSED", "100.00", paused_click)
    await consumer.drain()

    stored = await conversions(database)
    assert stored["BANNED"].commission_minor == 0
    assert "partner_banned" in stored["BANNED"].flags.split(",")
    assert stored["PAUSED"].commission_minor == 1050
    assert {"partner_paused", "review"} <= set(stored["PAUSED"].flags.split(","))
    async with database.session() as session:
        assert await session.get(Click, banned_click) is not None


async def test_commission_override_replaces_the_campaign_rule_for_that_partner_only(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    _, other_link = await add_partner_with_link(client, programme, "Other")
    body = {
        "partner_id": programme.partner["id"],
        "campaign_id": programme.campaign["id"],
        "commission_percent": "20",
    }
    override = await post_json(client, "/api/v1/commission-overrides", body, programme.headers)
    assert (override["commission_percent"], override["commission_flat_minor"]) == ("20.00", 0)
    again = await client.post("/api/v1/commission-overrides", json=body, headers=programme.headers)
    assert again.status_code == 400
    listed = await client.get("/api/v1/commission-overrides", headers=programme.headers)
    assert [item["id"] for item in listed.json()["items"]] == [override["id"]]

    await pixel(
        client, programme, "OVR", "100.00", await follow_link(client, programme.link["code"])
    )
    await pixel(client, programme, "STD", "100.00", await follow_link(client, other_link["code"]))
    await consumer.drain()
    stored = await conversions(database)
    assert stored["OVR"].commission_minor == 2000  # 20 %, no flat fee
    assert stored["STD"].commission_minor == 1050  # the campaign's 10 % + 0.50


async def test_batch_status_change_answers_per_id_and_keeps_the_trail(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    await pixel(client, programme, "B-1", "10")
    await pixel(client, programme, "B-2", "10", await follow_link(client, programme.link["code"]))
    await consumer.drain()
    stored = await conversions(database)
    first, second = stored["B-1"].id, stored["B-2"].id
    url = "/api/v1/conversions/status"
    rejected = await client.post(
        url,
        json={"ids": [first], "status": "rejected", "reason": "test order"},
        headers=programme.headers,
    )
    assert rejected.status_code == 200, rejected.text
    answer = await client.post(
        url,
        json={"ids": [first, second, 999], "status": "approved", "reason": "paid"},
        headers=programme.headers,
    )
    assert answer.json()["results"] == [
        {
            "id": first,
            "outcome": "refused",
            "status": "rejected",
            "detail": "a rejected conversion cannot become approved",
        },
        {"id": second, "outcome": "changed", "status": "approved"},
        {"id": 999, "outcome": "not_found"},
    ]
    detail = (await client.get(f"/api/v1/conversions/{second}", headers=programme.headers)).json()
    assert detail["verified"] is True  # an admin's approval confirms the sale
    assert [(h["from_status"], h["to_status"], h["reason"]) for h in detail["history"]] == [
        ("pending", "approved", "paid")
    ]
    assert detail["history"][0]["actor"].startswith("apikey:")
    async with database.session() as session:
        trail = (await session.scalars(select(ConversionChange.to_status))).all()
    assert sorted(trail) == ["approved", "rejected"]

    partner = {"Authorization": f"Bearer {await create_api_key(database, programme.partner['id'])}"}
    refused = await client.post(url, json={"ids": [second], "status": "reversed"}, headers=partner)
    assert refused.status_code == 403
    seen = (await client.get(f"/api/v1/conversions/{second}", headers=partner)).json()
    assert [(h["actor"], h["reason"]) for h in seen["history"]] == [("admin", "paid")]


async def test_auto_approval_skips_reviews_young_conversions_and_merchants_without_a_delay(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    response = await client.patch(
        f"/api/v1/merchants/{programme.merchant['id']}",
        json={"auto_approve_days": 3, "auto_approve_unverified_max_minor": 1000},
        headers=programme.headers,
    )
    assert response.json()["auto_approve_days"] == 3
    manual = await post_json(
        client, "/api/v1/merchants", {"name": "Manual", "currency": "EUR"}, programme.headers
    )
    for order_id in ("A-1", "A-2", "A-3"):
        await pixel(client, programme, order_id, "10")
    click_id = await follow_link(client, programme.link["code"])
    await pixel(client, programme, "HELD", "10", click_id)  # too fast: held for review
    await client.get("/p.gif", params={"m": manual["key"], "oid": "MANUAL", "amt": "10"})
    await consumer.drain()
    now = now_ms()

    assert await approve_due(database, now_ms=now + 2 * DAY_MS) == 0
    assert await approve_due(database, now_ms=now + 4 * DAY_MS, batch=2) == 3
    assert await approve_due(database, now_ms=now + 4 * DAY_MS) == 0  # idempotent

    stored = await conversions(database)
    assert {k: c.status for k, c in stored.items()} == {
        "A-1": "approved",
        "A-2": "approved",
        "A-3": "approved",
        "HELD": "pending",
        "MANUAL": "pending",
    }
    assert stored["A-1"].verified is False  # time is no proof of a sale
    async with database.session() as session:
        actors = set((await session.scalars(select(ConversionChange.actor))).all())
    assert actors == {"auto-approval"}


async def test_stats_show_verified_and_unverified_conversions_apart(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    await pixel(client, programme, "PIX", "30.00")
    assert (await send(client, programme, sale("POST", "20.00"))).status_code == 202
    await consumer.drain()
    totals = (await client.get("/api/v1/stats", headers=programme.headers)).json()["totals"]
    assert totals["conversions"] == 2
    assert (totals["verified_conversions"], totals["verified_revenue_minor"]) == (1, 2000)
    assert (totals["unverified_conversions"], totals["unverified_revenue_minor"]) == (1, 3000)
    (euro,) = totals["by_currency"]
    assert (euro["verified_conversions"], euro["unverified_revenue_minor"]) == (1, 3000)

    pending = (
        await client.get("/api/v1/conversions?verified=false", headers=programme.headers)
    ).json()
    assert [c["order_id"] for c in pending["items"]] == ["PIX"]
    await client.patch(
        f"/api/v1/conversions/{pending['items'][0]['id']}",
        json={"status": "approved"},
        headers=programme.headers,
    )
    totals = (await client.get("/api/v1/stats", headers=programme.headers)).json()["totals"]
    assert (totals["verified_conversions"], totals["unverified_conversions"]) == (2, 0)


CURRENCIES = st.sampled_from(["JPY", "KRW", "EUR", "USD", "KWD", "BHD"])  # 0, 2 and 3 digits


@given(CURRENCIES, st.integers(0, 10**12), st.integers(0, 10_000), st.integers(0, 10**6))
def test_commission_is_the_half_even_share_in_the_currencys_smallest_unit(
    currency: str, minor: int, bps: int, flat: int
) -> None:
    digits = MINOR_DIGITS[currency]
    text = format_minor(minor, currency)  # what a pixel or postback would send
    amount = parse_amount(text, currency)
    share = (Decimal(text) * bps / 10_000).quantize(Decimal(1).scaleb(-digits), ROUND_HALF_EVEN)
    assert commission_minor(amount, bps, flat) == int(share.scaleb(digits)) + flat


LINK = LinkInfo(
    id=1,
    code="c",
    partner_id=1,
    partner_key="p",
    partner_status="active",
    campaign_id=1,
    merchant_id=1,
    destination_url="https://shop.example/",
    merchant_domains=frozenset(),
    currency="EUR",
    window_days=30,
    commission_bps=0,
    commission_flat_minor=0,
    status="active",
    campaign_status="active",
    campaign_destination_url="https://shop.example/",
)


@given(
    CURRENCIES,
    CURRENCIES,
    st.sampled_from(["active", "paused", "banned"]),
    st.integers(0, 10**12),
    st.integers(0, 10_000),
    st.integers(0, 10**6),
)
def test_commission_step_pays_by_the_rule_in_any_currency(
    sale_currency: str, merchant_currency: str, status: str, amount: int, bps: int, flat: int
) -> None:
    link = replace(
        LINK,
        partner_status=status,
        currency=merchant_currency,
        commission_bps=bps,
        commission_flat_minor=flat,
    )
    event = ConversionEvent(
        new_event_id(0), 0, 1, "o", amount, sale_currency, None, Source.PIXEL, "sale", None, ""
    )
    row: dict[str, Any] = {"commission_minor": 0, "flags": ""}
    put_commission(row, ConversionFacts(event, link, 0, ""))
    flags = set(row["flags"].split(",")) - {""}
    if status == "banned":
        assert (row["commission_minor"], flags) == (0, {"partner_banned"})
        return
    same_currency = sale_currency == merchant_currency
    assert row["commission_minor"] == commission_minor(amount, bps, flat if same_currency else 0)
    assert ("partner_paused" in flags) == (status == "paused")
    assert ("flat_commission_currency_mismatch" in flags) == (not same_currency and flat > 0)


async def test_auto_approval_cron_job_runs_once_per_tick_across_workers(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    settings: Settings,
) -> None:
    jobs = {job.name: job for job in worker_options(settings, settings.redis_url)["cron_jobs"]}
    assert jobs["cron:auto_approve_job"].unique
    assert jobs["cron:link_health_job"].unique
    await client.patch(
        f"/api/v1/merchants/{programme.merchant['id']}",
        json={"auto_approve_days": 0},
        headers=programme.headers,
    )
    assert (await send(client, programme, sale("NOW", "10"))).status_code == 202
    await consumer.drain()

    assert await auto_approve_job({"database": database, "settings": settings}) == 1
    assert (await conversions(database))["NOW"].status == "approved"
