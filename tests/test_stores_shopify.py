"""Shopify as a conversion source, end to end: Shopify's sample order and refund (where they come
from: tests/fixtures/stores/PROVENANCE.md) signed with a test secret exactly as Shopify signs
webhooks, sent over real HTTP to the app on a loopback port, through Redis and the worker: a
sale with the click id the snippet put in the cart, a duplicate delivery, a wrong signature,
the customer's next order paying the original partner, a partial refund, a cancellation and a
topic that is ignored."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from backend.domain.stores.shopify import triggered_ms
from backend.storage.db.engine import Database
from backend.storage.db.models import Conversion, StoreEvent
from backend.worker.consumer import StreamConsumer
from tests.support import create_api_key, create_programme, follow_link
from tests.test_sources import rejections, served, web

__all__ = ["served", "web"]  # the fixtures this module uses from test_sources

FIXTURES = Path(__file__).parent / "fixtures" / "stores" / "shopify"
SECRET = "shpss_test_0123456789abcdef"
SHOP = "example.myshopify.com"
ORDER = "450789469"  # the sample order


def shopify_body(name: str, click_id: str = "", **changes: Any) -> bytes:
    text = (FIXTURES / f"{name}.json").read_text()
    resource = json.loads(text.replace("{{CLICK_ID}}", click_id))
    resource.update(changes)
    return json.dumps(resource).encode()


def shopify_hmac(body: bytes, secret: str = SECRET) -> str:
    """``X-Shopify-Hmac-Sha256`` as Shopify computes it."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


async def deliver(
    shop: httpx.AsyncClient,
    token: str,
    topic: str,
    body: bytes,
    webhook_id: str,
    signature: str | None = None,
) -> httpx.Response:
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": signature or shopify_hmac(body),
        "X-Shopify-Shop-Domain": SHOP,
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-API-Version": "2025-07",
        "X-Shopify-Triggered-At": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    return await shop.post(f"/pb/{token}", content=body, headers=headers)


async def orders(database: Database) -> dict[str, Conversion]:
    async with database.session() as session:
        rows = (await session.scalars(select(Conversion))).all()
    return {row.order_id or "": row for row in rows}


async def test_shopify_sale_duplicate_repeat_order_partial_refund_and_cancellation(
    web: httpx.AsyncClient, consumer: StreamConsumer, database: Database
) -> None:
    headers = {"Authorization": f"Bearer {await create_api_key(database)}"}
    programme = await create_programme(web, headers, currency="USD")  # 10 % + 0.50
    campaign = f"/api/v1/campaigns/{programme.campaign['id']}"
    renewals = {"renewal_mode": "lifetime", "renewal_percent": "5"}
    assert (await web.patch(campaign, json=renewals, headers=headers)).is_success
    body = {
        "merchant_id": programme.merchant["id"],
        "kind": "shopify",
        "signing_secret": SECRET,
        "shop_domain": SHOP,
    }
    created = await web.post("/api/v1/sources", json=body, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["shop_domain"] == SHOP
    token = created.json()["token"]
    click_id = await follow_link(web, programme.link["code"])

    async with httpx.AsyncClient(base_url=str(web.base_url)) as shop:
        sale = shopify_body("orders_create", click_id)
        answer = await deliver(shop, token, "orders/create", sale, "wh-1")
        assert answer.status_code == 200, answer.text
        assert answer.json()["queued"] is True
        await consumer.drain()
        # Shopify retries the same delivery; orders/paid names the same order.
        assert (await deliver(shop, token, "orders/create", sale, "wh-1")).json()["duplicate"]
        await deliver(shop, token, "orders/paid", sale, "wh-2")
        await consumer.drain()
        forged = await deliver(shop, token, "orders/create", sale, "wh-3", shopify_hmac(sale, "x"))
        assert forged.status_code == 400

        stored = (await orders(database))[ORDER]
        assert (stored.partner_id, stored.click_id, stored.coupon) == (
            programme.partner["id"],
            click_id,
            "TENOFF",  # an unknown coupon: noted, the click stands
        )
        assert (stored.amount_minor, stored.currency, stored.commission_minor) == (
            40994,
            "USD",
            4149,  # 10 % of 409.94 + 0.50
        )

        # The customer's next order, with no click: the first partner, at the renewal rate.
        repeat = shopify_body(
            "orders_create", id=450789470, note_attributes=[], discount_codes=[],
            landing_site="http://www.example.com/", total_price="100.00",
        )  # fmt: skip
        assert (await deliver(shop, token, "orders/create", repeat, "wh-4")).json()["queued"]
        # 209.00 of the 409.94 refunded: lowered in proportion.
        refund = shopify_body("refunds_create")
        assert (await deliver(shop, token, "refunds/create", refund, "wh-5")).json()["queued"]
        await consumer.drain()
        assert (await deliver(shop, token, "refunds/create", refund, "wh-5")).json()["duplicate"]
        cancelled = shopify_body("orders_create", id=450789470)
        answer = await deliver(shop, token, "orders/cancelled", cancelled, "wh-6")
        assert answer.json()["queued"] is True
        ignored = await deliver(shop, token, "products/update", b"{}", "wh-7")
        assert ignored.json() == {"ok": True, "ignored": "topic 'products/update' is not used"}
        await consumer.drain()

    rows = await orders(database)
    lowered, renewed = rows[ORDER], rows["450789470"]
    assert (lowered.amount_minor, lowered.commission_minor, lowered.status) == (
        20094,
        4149 * 20094 // 40994,
        "pending",
    )
    assert (renewed.partner_id, renewed.attribution, renewed.amount_minor) == (
        programme.partner["id"],
        "customer",
        10000,
    )
    assert (renewed.commission_minor, renewed.status) == (500, "rejected")  # then cancelled
    assert renewed.renewal_rule == "renewal (lifetime) at its own rate"
    async with database.session() as session:
        events = (await session.scalars(select(StoreEvent).order_by(StoreEvent.id))).all()
    assert [(e.event_type, e.event_key, e.conversion_id) for e in events] == [
        ("orders/create", "wh-1", lowered.id),
        ("orders/paid", "wh-2", lowered.id),
        ("orders/create", "wh-4", renewed.id),
        ("refunds/create", "wh-5", lowered.id),
        ("orders/cancelled", "wh-6", renewed.id),
    ]
    assert [reason for _, reason, _ in await rejections(database)] == ["bad_signature"]


async def test_a_large_order_gets_through_and_a_body_over_the_bound_does_not(
    web: httpx.AsyncClient, consumer: StreamConsumer, database: Database
) -> None:
    """An order with many line items is over the 64 KiB a network's postback may send, not
    over a store's bound (1 MiB); a body over that is 413 and kept as refused."""
    headers = {"Authorization": f"Bearer {await create_api_key(database)}"}
    programme = await create_programme(web, headers, currency="USD")
    body = {"merchant_id": programme.merchant["id"], "kind": "shopify", "signing_secret": SECRET}
    token = (
        await web.post("/api/v1/sources", json=body | {"shop_domain": SHOP}, headers=headers)
    ).json()["token"]
    click_id = await follow_link(web, programme.link["code"])
    order = json.loads(shopify_body("orders_create", click_id))
    order["line_items"] = order["line_items"] * 200
    large = json.dumps(order).encode()
    assert 64 * 1024 < len(large) < 1024 * 1024
    async with httpx.AsyncClient(base_url=str(web.base_url)) as shop:
        answer = await deliver(shop, token, "orders/create", large, "wh-large")
        assert answer.json()["queued"] is True, answer.text
        huge = await deliver(shop, token, "orders/create", b" " * (1024 * 1024 + 1), "wh-huge")
        assert huge.status_code == 413
    await consumer.drain()
    assert (await orders(database))[ORDER].amount_minor == 40994
    assert [reason for _, reason, _ in await rejections(database)] == ["field_too_long"]


def test_the_event_time_is_shopifys_when_it_says_one() -> None:
    now = 1_800_000_000_000
    said = {"x-shopify-triggered-at": "2026-12-07T18:00:00.5Z"}
    assert triggered_ms(said, now) == 1_796_666_400_500
    assert triggered_ms({"x-shopify-triggered-at": "2026-12-07T18:00:00"}, now) == now  # no zone
    assert triggered_ms({"x-shopify-triggered-at": "soon"}, now) == now
    assert triggered_ms({}, now) == now
