"""Stripe as a conversion source, end to end: Stripe's sample events (where they come from:
tests/fixtures/stores/PROVENANCE.md) signed with a test secret exactly as Stripe signs them,
sent over real HTTP to the app on a loopback port, through Redis and the worker into the
database: a sale, a duplicate delivery, a wrong signature, the customer's renewal paying the
original partner, a partial refund, a dispute, an event type that is ignored and a sale that
cannot be attributed."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from backend.core.ids import CustomerHasher
from backend.core.settings import Settings
from backend.storage.db.engine import Database
from backend.storage.db.models import (
    Conversion,
    ConversionChange,
    CustomerBinding,
    OutboxMessage,
    RejectedEventRow,
    StoreEvent,
)
from backend.worker.consumer import StreamConsumer
from tests.support import create_api_key, follow_link, make_programme
from tests.test_sources import rejections, served, stats_conversions, web

__all__ = ["served", "web"]  # the fixtures this module uses from test_sources

FIXTURES = Path(__file__).parent / "fixtures" / "stores" / "stripe"
SECRET = "whsec_test_0123456789abcdef0123456789abcdef"
PAYMENT = "pi_1PgafyB7WZ01zgkWSjxsAJo3"  # the sample session's payment intent
INVOICE = "in_1Pgc6tB7WZ01zgkWu9fdqL6I"  # the sample invoice
CUSTOMER = "cus_QXg1o8vcGmoR32"  # the sample invoice's customer


def stripe_event(name: str, click_id: str = "", **changes: Any) -> bytes:
    """The fixture as Stripe would send it now; ``changes`` to its ``data.object``."""
    text = (FIXTURES / f"{name}.json").read_text()
    event = json.loads(text.replace("{{CLICK_ID}}", click_id))
    event["created"] = int(time.time())
    event["data"]["object"].update(changes)
    return json.dumps(event).encode()


def stripe_signature(body: bytes, secret: str = SECRET, at_s: int | None = None) -> str:
    """``Stripe-Signature`` as Stripe computes it."""
    timestamp = int(time.time()) if at_s is None else at_s
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


async def deliver(
    stripe: httpx.AsyncClient, token: str, body: bytes, signature: str | None = None
) -> httpx.Response:
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": signature or stripe_signature(body),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }
    return await stripe.post(f"/pb/{token}", content=body, headers=headers)


async def order(database: Database, order_id: str) -> Conversion:
    async with database.session() as session:
        found = await session.scalar(select(Conversion).where(Conversion.order_id == order_id))
    assert found is not None, order_id
    return found


async def test_stripe_sale_duplicate_renewal_partial_refund_and_dispute(
    web: httpx.AsyncClient, consumer: StreamConsumer, database: Database, settings: Settings
) -> None:
    programme = await make_programme(web, database)  # 10 % + 0.50 EUR
    headers = programme.headers
    campaign = f"/api/v1/campaigns/{programme.campaign['id']}"
    renewals = {"renewal_mode": "months", "renewal_months": 12, "renewal_percent": "5"}
    patched = await web.patch(campaign, json=renewals, headers=headers)
    assert patched.status_code == 200, patched.text
    assert patched.json()["renewal_percent"] == "5.00"
    created = await web.post(
        "/api/v1/sources",
        json={"merchant_id": programme.merchant["id"], "kind": "stripe", "signing_secret": SECRET},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    source = created.json()
    assert (source["kind"], source["has_signing_secret"]) == ("stripe", True)
    assert SECRET not in created.text  # the secret is never shown back
    token = source["token"]
    click_id = await follow_link(web, programme.link["code"])

    async with httpx.AsyncClient(base_url=str(web.base_url)) as stripe:
        sale = stripe_event("checkout.session.completed", click_id)
        answer = await deliver(stripe, token, sale)
        assert answer.status_code == 200, answer.text
        assert answer.json()["queued"] is True
        await consumer.drain()
        stored = await order(database, PAYMENT)
        assert (stored.partner_id, stored.click_id, stored.source_id) == (
            programme.partner["id"],
            click_id,
            source["id"],
        )
        assert (stored.amount_minor, stored.currency, stored.commission_minor) == (
            4990,
            "EUR",
            549,  # 10 % of 49.90 + 0.50
        )
        # Kept as the keyed hash of Stripe's customer id, never the id.
        hashed = CustomerHasher(settings.secret_key).hash(stored.merchant_id, CUSTOMER)
        assert stored.customer_hash == hashed
        assert (stored.verified, stored.event_name, stored.renewal_rule) == (True, "sale", "")

        # Stripe retries: the same event changes nothing, answered as a duplicate.
        again = await deliver(stripe, token, sale)
        assert again.json() == {"ok": True, "duplicate": True}
        assert await consumer.drain() == 0

        # A body signed with another secret, or an old timestamp: 400, kept as rejected.
        forged = await deliver(stripe, token, sale, stripe_signature(sale, "whsec_other_secret"))
        assert forged.status_code == 400
        stale = await deliver(stripe, token, sale, stripe_signature(sale, at_s=1_600_000_000))
        assert stale.status_code == 400
        await consumer.drain()

        # The subscription renews a month later: no click, the customer's partner is paid
        # by the campaign's renewal rule (5 %, no flat fee).
        renewal = await deliver(stripe, token, stripe_event("invoice.paid"))
        assert renewal.json()["queued"] is True
        await consumer.drain()
        renewed = await order(database, INVOICE)
        assert (renewed.partner_id, renewed.campaign_id, renewed.click_id) == (
            programme.partner["id"],
            programme.campaign["id"],
            None,
        )
        assert (renewed.attribution, renewed.event_name) == ("customer", "renewal")
        assert (renewed.amount_minor, renewed.commission_minor) == (1990, 100)  # 99.5 rounded
        assert renewed.renewal_rule == "renewal (12 months) at its own rate"

        # 10.00 of the 49.90 refunded: amount and commission lowered in proportion.
        refund = await deliver(stripe, token, stripe_event("charge.refunded"))
        assert refund.json()["queued"] is True
        await consumer.drain()
        assert (await deliver(stripe, token, stripe_event("charge.refunded"))).json()[
            "duplicate"
        ] is True
        await consumer.drain()
        lowered = await order(database, PAYMENT)
        assert (lowered.amount_minor, lowered.commission_minor) == (3990, 438)
        assert lowered.status == "pending"

        # The customer disputes the rest: the conversion is refused (it was pending).
        dispute = await deliver(stripe, token, stripe_event("charge.dispute.created"))
        assert dispute.json()["queued"] is True
        await consumer.drain()

        ignored = await deliver(stripe, token, stripe_event("customer.created"))
        assert ignored.json() == {
            "ok": True,
            "ignored": "event type 'customer.created' is not used",
        }

        # A paid session with neither a click id nor a customer cannot be attributed.
        lost = stripe_event(
            "checkout.session.completed", customer=None, customer_details=None,
            payment_intent="pi_unattributed", id="cs_test_unattributed",
        )  # fmt: skip
        lost = lost.replace(b"evt_1Pgc76B7WZ01zgkWcheckout", b"evt_1Pgc76B7WZ01zgkWlost")
        unattributed = await deliver(stripe, token, lost)
        assert unattributed.status_code == 200
        assert unattributed.json()["rejected"] == "no_attribution"
        # A currency that is no ISO 4217 code, a refund of a payment never tracked: refused
        # with their reasons, answered 200 (a retry would not help).
        odd = stripe_event("checkout.session.completed", click_id, currency="zzz")
        odd = odd.replace(b"evt_1Pgc76B7WZ01zgkWcheckout", b"evt_1Pgc76B7WZ01zgkWodd")
        assert (await deliver(stripe, token, odd)).json()["rejected"] == "unknown_currency"
        untracked = stripe_event("charge.refunded", payment_intent="pi_never_tracked")
        untracked = untracked.replace(b"evt_1Pgc76B7WZ01zgkWrefund", b"evt_1Pgc76B7WZ01zgkWnone")
        assert (await deliver(stripe, token, untracked)).json()["rejected"] == "unknown_order"
        await consumer.drain()

    disputed = await order(database, PAYMENT)
    assert disputed.status == "rejected"
    async with database.session() as session:
        changes = (
            await session.scalars(
                select(ConversionChange)
                .where(ConversionChange.conversion_id == disputed.id)
                .order_by(ConversionChange.id)
            )
        ).all()
        events = (
            await session.scalars(
                select(StoreEvent)
                .where(StoreEvent.conversion_id == disputed.id)
                .order_by(StoreEvent.id)
            )
        ).all()
        bindings = (await session.scalars(select(CustomerBinding))).all()
        updates = await session.scalars(
            select(OutboxMessage.event).where(OutboxMessage.conversion_id == disputed.id)
        )
        assert list(updates) == []  # no postback or webhook is set up: nothing owed
    actor = f"source:{source['id']}"
    assert [(c.from_status, c.to_status, c.actor, c.commission_to_minor) for c in changes] == [
        ("pending", "pending", actor, 438),
        ("pending", "rejected", actor, None),
    ]
    assert "49.90 -> 39.90 EUR" in changes[0].reason
    assert [(e.event_type, e.detail) for e in events] == [
        ("checkout.session.completed", "created the conversion"),
        ("charge.refunded", "amount lowered to 39.90 EUR"),
        ("charge.dispute.created", "status rejected"),
    ]
    assert [(b.partner_id, b.conversion_id) for b in bindings] == [
        (programme.partner["id"], stored.id)
    ]
    # Counted: the renewal only (the sale was refused after its partial refund).
    assert await stats_conversions(database) == (1, 1990, 100)
    reasons = [reason for _, reason, _ in await rejections(database)]
    assert reasons == [
        "bad_signature",
        "bad_signature",
        "no_attribution",
        "unknown_currency",
        "unknown_order",
    ]

    async with database.session() as session:
        payloads = list(await session.scalars(select(RejectedEventRow.payload)))
    assert payloads[0].startswith(f"source #{source['id']} (stripe) checkout.session.completed")
    assert not [payload for payload in payloads if "@" in payload]  # no customer's e-mail kept

    # The conversion page of the API shows which store events made and changed it.
    detail = await web.get(f"/api/v1/conversions/{disputed.id}", headers=headers)
    assert [e["event_type"] for e in detail.json()["store_events"]] == [
        "checkout.session.completed",
        "charge.refunded",
        "charge.dispute.created",
    ]
    partner_key = await create_api_key(database, programme.partner["id"])
    own = await web.get(
        f"/api/v1/conversions/{disputed.id}", headers={"Authorization": f"Bearer {partner_key}"}
    )
    assert own.status_code == 200
    assert own.json()["store_events"] == []  # the merchant's store, not the partner's business
    renewal_detail = await web.get(f"/api/v1/conversions/{renewed.id}", headers=headers)
    assert renewal_detail.json()["renewal_rule"] == "renewal (12 months) at its own rate"


async def test_a_subscriptions_first_invoice_waits_for_its_checkout_session(
    web: httpx.AsyncClient, consumer: StreamConsumer, database: Database
) -> None:
    """Stripe may send the first invoice before the checkout session: the invoice is ignored
    (unless it names a click), so the session, which carries the click id, makes the sale."""
    programme = await make_programme(web, database)
    body = {"merchant_id": programme.merchant["id"], "kind": "stripe", "signing_secret": SECRET}
    created = await web.post("/api/v1/sources", json=body, headers=programme.headers)
    token = created.json()["token"]
    click_id = await follow_link(web, programme.link["code"])
    async with httpx.AsyncClient(base_url=str(web.base_url)) as stripe:
        first = stripe_event("invoice.paid", billing_reason="subscription_create")
        answer = await deliver(stripe, token, first)
        assert answer.json()["ignored"].startswith("a subscription's first invoice")
        session = stripe_event(
            "checkout.session.completed", click_id, mode="subscription", invoice=INVOICE,
            payment_intent=None, subscription="sub_1",
        )  # fmt: skip
        assert (await deliver(stripe, token, session)).json()["queued"] is True
        await consumer.drain()
    sale = await order(database, INVOICE)
    assert (sale.partner_id, sale.click_id, sale.event_name) == (
        programme.partner["id"],
        click_id,
        "sale",
    )


async def test_a_delayed_payment_is_a_sale_once_stripe_says_it_is_paid(
    web: httpx.AsyncClient, consumer: StreamConsumer, database: Database
) -> None:
    programme = await make_programme(web, database)
    body = {"merchant_id": programme.merchant["id"], "kind": "stripe", "signing_secret": SECRET}
    created = await web.post("/api/v1/sources", json=body, headers=programme.headers)
    token = created.json()["token"]
    click_id = await follow_link(web, programme.link["code"])
    async with httpx.AsyncClient(base_url=str(web.base_url)) as stripe:
        unpaid = stripe_event("checkout.session.completed", click_id, payment_status="unpaid")
        assert (await deliver(stripe, token, unpaid)).json() == {
            "ok": True,
            "ignored": "not paid yet",
        }
        paid = stripe_event("checkout.session.completed", click_id)
        paid = paid.replace(
            b'"checkout.session.completed"', b'"checkout.session.async_payment_succeeded"'
        )
        paid = paid.replace(b"evt_1Pgc76B7WZ01zgkWcheckout", b"evt_1Pgc76B7WZ01zgkWasync")
        assert (await deliver(stripe, token, paid)).json()["queued"] is True
        await consumer.drain()
    sale = await order(database, PAYMENT)
    assert (sale.partner_id, sale.amount_minor) == (programme.partner["id"], 4990)
