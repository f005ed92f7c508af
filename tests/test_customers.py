"""Customers and renewals: the customer reference a pixel (``cust=``) or a signed postback
(``customer``) carries is kept only as its keyed hash; the customer is bound to the partner of
their first attributed conversion, the first written winning even when two land at once (on
SQLite and PostgreSQL); a later conversion of theirs without a click is a renewal credited to
that partner by the campaign's renewal rule, for N months or for life, at its own rate or the
campaign's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from backend.core.ids import CustomerHasher
from backend.core.settings import Settings
from backend.domain.affiliate.commission import add_months_ms, renewal_rule
from backend.domain.stores.customers import bind_customers
from backend.storage.db.engine import Database
from backend.storage.db.models import Conversion, CustomerBinding, RejectedEventRow
from backend.worker.consumer import StreamConsumer
from tests.postback_support import sale, send
from tests.support import BROWSER_HEADERS, add_partner_with_link, follow_link, make_programme

MS = 1000


def _ms(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp() * MS)


async def _conversions(database: Database) -> dict[str, Conversion]:
    async with database.session() as session:
        rows = (await session.scalars(select(Conversion))).all()
    return {row.order_id or "": row for row in rows}


async def test_the_pixel_keeps_the_customer_only_as_its_keyed_hash(
    client: AsyncTestClient[Any],
    consumer: StreamConsumer,
    database: Database,
    settings: Settings,
) -> None:
    programme = await make_programme(client, database)
    key = programme.merchant["key"]
    click_id = await follow_link(client, programme.link["code"])
    query = {"m": key, "oid": "P-1", "amt": "20.00", "clk": click_id, "cust": "jane@example.com"}
    assert (await client.get("/p.gif", params=query, headers=BROWSER_HEADERS)).status_code == 200
    bad = {"m": key, "oid": "P-2", "amt": "lots", "cust": "jane@example.com"}
    assert (await client.get("/p.gif", params=bad, headers=BROWSER_HEADERS)).status_code == 200
    # The snippet's beacon carries it as ``cust`` too.
    beacon = {"m": key, "events": [{"t": "conversion", "oid": "P-3", "amt": "5", "cust": "joe"}]}
    headers = {**BROWSER_HEADERS, "Origin": "https://shop.example"}
    assert (await client.post("/e", json=beacon, headers=headers)).status_code == 202
    await consumer.drain()

    stored = (await _conversions(database))["P-1"]
    hasher = CustomerHasher(settings.secret_key)
    assert stored.customer_hash == hasher.hash(stored.merchant_id, "jane@example.com")
    assert stored.customer_hash != hasher.hash(stored.merchant_id + 1, "jane@example.com")
    joe = (await _conversions(database))["P-3"]  # credited by the ct_click cookie
    assert joe.customer_hash == hasher.hash(stored.merchant_id, "joe")
    async with database.session() as session:
        kept = (await session.scalars(select(RejectedEventRow))).all()
        bindings = (await session.scalars(select(CustomerBinding))).all()
    assert [row.reason for row in kept] == ["invalid_amount"]
    assert "jane" not in kept[0].payload  # the raw reference is kept nowhere
    assert [(b.partner_id, b.conversion_id) for b in bindings] == [
        (programme.partner["id"], stored.id),
        (programme.partner["id"], joe.id),
    ]


async def test_renewals_pay_the_first_partner_by_the_renewal_rule_while_it_pays(
    client: AsyncTestClient[Any], consumer: StreamConsumer, database: Database
) -> None:
    programme = await make_programme(client, database)  # 10 % + 0.50
    other_partner, other_link = await add_partner_with_link(client, programme, "Other")
    campaign = f"/api/v1/campaigns/{programme.campaign['id']}"
    lifetime = {"renewal_mode": "lifetime"}
    assert (await client.patch(campaign, json=lifetime, headers=programme.headers)).is_success
    first_click = await follow_link(client, programme.link["code"])
    other_click = await follow_link(client, other_link["code"])
    customer = {"customer": "cus_42"}
    sent = await send(client, programme, sale("S-1", "40.00", click_id=first_click, **customer))
    assert sent.status_code == 202, sent.text
    await consumer.drain()
    # The customer buys again through another partner's click: the click wins that sale,
    # the binding stays with the first partner.
    sent = await send(client, programme, sale("S-2", "40.00", click_id=other_click, **customer))
    await consumer.drain()
    # Renewals without a click: the first partner, at the campaign's rate (lifetime).
    renewal = sale("R-1", "20.00", event="renewal", **customer)
    assert (await send(client, programme, renewal)).status_code == 202
    await consumer.drain()
    # Not paying renewals any more: the next one is credited to nobody.
    none = {"renewal_mode": "none"}
    assert (await client.patch(campaign, json=none, headers=programme.headers)).is_success
    await send(client, programme, sale("R-2", "20.00", event="renewal", **customer))
    # A customer nobody referred: unattributed.
    await send(client, programme, sale("R-3", "20.00", event="renewal", customer="cus_7"))
    await consumer.drain()

    rows = await _conversions(database)
    partner, other = programme.partner["id"], other_partner["id"]
    assert [(o, rows[o].partner_id, rows[o].attribution) for o in sorted(rows)] == [
        ("R-1", partner, "customer"),
        ("R-2", None, ""),
        ("R-3", None, ""),
        ("S-1", partner, "click"),
        ("S-2", other, "click"),
    ]
    assert (rows["R-1"].commission_minor, rows["R-1"].renewal_rule) == (
        250,  # 10 % of 20.00 + 0.50, the campaign's rule
        "renewal (lifetime) at the usual rate",
    )
    answer = await client.get(f"/api/v1/conversions/{rows['R-1'].id}", headers=programme.headers)
    assert answer.json()["renewal_rule"] == "renewal (lifetime) at the usual rate"


async def test_the_first_binding_wins_when_two_land_at_once(database: Database) -> None:
    """Two batches bind one customer to two partners concurrently: exactly one binding, and a
    batch delivered again changes nothing."""

    def row(event_id: str, partner_id: int) -> dict[str, Any]:
        return {
            "event_id": event_id,
            "merchant_id": 1,
            "customer_hash": "c" * 64,
            "partner_id": partner_id,
            "campaign_id": 1,
            "at_ms": 0,
        }

    async with database.writing() as connection:
        for event_id in ("a", "b"):
            await connection.execute(
                Conversion.__table__.insert(),  # type: ignore[attr-defined]
                {
                    "event_id": event_id, "at_ms": 0, "merchant_id": 1, "order_id": event_id,
                    "amount_minor": 100, "commission_minor": 10, "currency": "EUR",
                    "status": "pending", "source": "postback", "event_name": "sale", "flags": "",
                },
            )  # fmt: skip
    await asyncio.gather(
        database.run_write(bind_customers, [row("a", 1)]),
        database.run_write(bind_customers, [row("b", 2)]),
    )
    await database.run_write(bind_customers, [row("b", 2)])
    async with database.session() as session:
        bindings = (await session.scalars(select(CustomerBinding))).all()
    assert len(bindings) == 1
    assert bindings[0].partner_id in (1, 2)


def test_renewal_rules_months_lifetime_and_rates() -> None:
    bound = _ms(2026, 1, 31)
    assert add_months_ms(bound, 1) == _ms(2026, 2, 28)  # the month's last day
    assert add_months_ms(bound, 12) == _ms(2027, 1, 31)
    base = (1000, 50)
    inside, after = _ms(2026, 2, 27), _ms(2026, 2, 28)
    months = renewal_rule("months", 1, None, None, base, bound, inside)
    assert months is not None
    assert (months.bps, months.flat_minor) == base
    assert renewal_rule("months", 1, None, None, base, bound, after) is None
    own = renewal_rule("lifetime", None, 500, None, base, bound, _ms(2040, 1, 1))
    assert own is not None
    assert (own.bps, own.flat_minor, own.label) == (500, 0, "renewal (lifetime) at its own rate")
    assert renewal_rule("none", None, 500, 10, base, bound, inside) is None


async def test_a_refused_postback_keeps_no_customer_reference(
    client: AsyncTestClient[Any], consumer: StreamConsumer, database: Database
) -> None:
    programme = await make_programme(client, database)
    answer = await send(client, programme, sale("B-1", "lots", customer="jane@example.com"))
    assert answer.status_code == 400
    await consumer.drain()
    async with database.session() as session:
        kept = (await session.scalars(select(RejectedEventRow))).all()
    assert [row.reason for row in kept] == ["invalid_amount"]
    assert '"order_id":"B-1"' in kept[0].payload
    assert "jane" not in kept[0].payload
