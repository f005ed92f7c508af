"""The admin pages of a store's source and of the conversions it makes: a Stripe source made
through the form (its webhook URL shown once, its secret never shown back, a wrong secret
refused with a clear message), and the conversion page showing the store events that created
and changed a conversion, to the admin only."""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from backend.storage.db.engine import Database
from backend.storage.db.models import Campaign, Conversion, ConversionSource
from backend.worker.consumer import StreamConsumer
from tests.support import follow_link, make_programme, sign_in
from tests.test_admin import sign_in_partner, submit
from tests.test_stores_stripe import SECRET, stripe_event, stripe_signature


async def test_a_stripe_source_made_in_the_admin_and_the_conversion_page(
    client: AsyncTestClient[Any], consumer: StreamConsumer, database: Database
) -> None:
    programme = await make_programme(client, database)
    await sign_in(client, database)
    form = {
        "name": "Stripe",
        "merchant_id": str(programme.merchant["id"]),
        "kind": "stripe",
        "field_order_id": "txid",
        "statuses": "",
        "allow_ips": "",
    }
    wrong = await submit(client, "/admin/sources/new", {**form, "signing_secret": "sk_live_123"})
    assert wrong.status_code == 400
    assert "start with whsec_" in wrong.text
    created = await submit(client, "/admin/sources/new", {**form, "signing_secret": SECRET})
    assert created.status_code == 200, created.text
    match = re.search(r'value="http://testserver.local/pb/(src_[^"]+)"', created.text)
    assert match is not None, created.text
    token = match.group(1)
    async with database.session() as session:
        source = await session.scalar(select(ConversionSource))
    assert source is not None
    assert (source.kind, source.signing_secret) == ("stripe", SECRET)
    page = await client.get(f"/admin/sources/{source.id}")
    assert page.status_code == 200
    assert "stripe" in page.text
    assert SECRET not in page.text

    click_id = await follow_link(client, programme.link["code"])
    body = stripe_event("checkout.session.completed", click_id)
    headers = {"Stripe-Signature": stripe_signature(body), "Content-Type": "application/json"}
    assert (await client.post(f"/pb/{token}", content=body, headers=headers)).is_success
    refund = stripe_event("charge.refunded")
    headers = {"Stripe-Signature": stripe_signature(refund), "Content-Type": "application/json"}
    await consumer.drain()
    assert (await client.post(f"/pb/{token}", content=refund, headers=headers)).is_success
    await consumer.drain()
    async with database.session() as session:
        conversion = await session.scalar(select(Conversion))
    assert conversion is not None
    shown = await client.get(f"/conversions/{conversion.id}")
    assert shown.status_code == 200
    assert "Store events" in shown.text
    assert "checkout.session.completed" in shown.text
    assert "amount lowered to 39.90 EUR" in shown.text

    # The partner sees the conversion, not the store's events (its sources are the merchant's).
    await client.post("/logout", data={"_csrf_token": client.cookies.get("csrftoken")})
    client.cookies.clear()
    await sign_in_partner(client, database, programme.partner["id"])
    own = await client.get(f"/conversions/{conversion.id}")
    assert own.status_code == 200
    assert "Store events" not in own.text


async def test_a_campaigns_renewal_rule_set_in_the_admin(
    client: AsyncTestClient[Any], database: Database
) -> None:
    programme = await make_programme(client, database)
    await sign_in(client, database)
    path = f"/admin/campaigns/{programme.campaign['id']}"
    form = {
        "name": "Winter sale",
        "destination_url": "https://shop.example/winter",
        "commission_percent": "10",
        "commission_flat_minor": "0.50",
        "cookie_window_days": "",
        "status": "active",
        "renewal_mode": "months",
        "renewal_months": "",
        "renewal_percent": "5",
        "renewal_flat_minor": "",
    }
    missing = await submit(client, path, form)
    assert missing.status_code == 400
    assert "number of months" in missing.text
    saved = await submit(client, path, {**form, "renewal_months": "12"})
    assert saved.status_code in (200, 303), saved.text
    async with database.session() as session:
        campaign = await session.get(Campaign, programme.campaign["id"])
    assert campaign is not None
    assert (campaign.renewal_mode, campaign.renewal_months, campaign.renewal_bps) == (
        "months",
        12,
        500,
    )
    page = await client.get(path)
    assert '<option value="months" selected>' in page.text
    assert 'name="renewal_percent" value="5.00"' in page.text
