"""What a store's event does to its conversion in the worker's transaction, on SQLite and
PostgreSQL: a partial refund lowers the amount and the commission in proportion with its audit
row, the rollup moved with it and a ``conversion.updated`` message in the outbox; the same
refund applied by two workers at once lowers it once."""

from __future__ import annotations

import asyncio

from sqlalchemy import insert, select

from backend.domain.events import ConversionEvent, NetworkEvent, Source
from backend.domain.stores.changes import apply_store_event
from backend.storage.db.engine import Database
from backend.storage.db.models import (
    Conversion,
    ConversionChange,
    LedgerEntry,
    Merchant,
    OutboxMessage,
    Partner,
    StatsHourly,
    StoreEvent,
    WebhookEndpoint,
)

HOUR_AT = 3_600_000 * 500_000


async def _stored_sale(database: Database) -> None:
    async with database.writing() as connection:
        await connection.execute(
            insert(Merchant),
            {"id": 1, "name": "Shop", "key": "mk_1", "postback_secret": "s", "domains": [],
             "currency": "EUR"},
        )  # fmt: skip
        await connection.execute(insert(Partner), {"id": 7, "name": "Blog", "key": "pk_7"})
        await connection.execute(
            insert(WebhookEndpoint),
            {"merchant_id": 1, "url": "https://hooks.example/", "events": ["conversion.updated"],
             "secret": "whsec_x", "active": True},
        )  # fmt: skip
        await connection.execute(
            insert(Conversion),
            {"event_id": "e" * 32, "at_ms": HOUR_AT, "merchant_id": 1, "order_id": "pi_1",
             "partner_id": 7, "campaign_id": 3, "link_id": 5, "amount_minor": 4990,
             "commission_minor": 549, "currency": "EUR", "status": "approved",
             "source": "network", "event_name": "sale", "flags": "", "verified": True,
             "source_id": 2},
        )  # fmt: skip
        await connection.execute(
            insert(StatsHourly),
            {"hour_ms": HOUR_AT, "merchant_id": 1, "link_id": 5, "currency": "EUR",
             "partner_id": 7, "campaign_id": 3, "clicks": 0, "unique_clicks": 0,
             "bot_clicks": 0, "flagged_clicks": 0, "impressions": 0, "conversions": 1,
             "revenue_minor": 4990, "commission_minor": 549},
        )  # fmt: skip


def _refund(remaining: int) -> NetworkEvent:
    sale = ConversionEvent(
        event_id="f" * 32, at_ms=HOUR_AT + 1, merchant_id=1, order_id="pi_1", amount_minor=0,
        currency="EUR", click_id=None, source=Source.NETWORK, event_name="refund",
        items_json=None, ip_prefix="",
    )  # fmt: skip
    return NetworkEvent(
        sale=sale, source_id=2, commission_minor=-1, status="", remaining_minor=remaining,
        store_event="stripe charge.refunded evt_1",
    )  # fmt: skip


async def test_a_partial_refund_lowers_once_even_when_two_workers_apply_it(
    database: Database,
) -> None:
    await _stored_sale(database)
    refund = _refund(3990)
    await asyncio.gather(
        database.run_write(apply_store_event, refund),
        database.run_write(apply_store_event, refund),
    )
    await database.run_write(apply_store_event, refund)  # delivered again later
    async with database.session() as session:
        conversion = await session.scalar(select(Conversion))
        changes = (await session.scalars(select(ConversionChange))).all()
        events = (await session.scalars(select(StoreEvent))).all()
        stats = await session.scalar(select(StatsHourly))
        messages = (await session.scalars(select(OutboxMessage))).all()
        ledger = (await session.execute(select(LedgerEntry.amount_minor))).scalars().all()
    assert conversion is not None
    assert stats is not None
    assert (conversion.amount_minor, conversion.commission_minor) == (3990, 438)  # 549*3990//4990
    assert [(c.commission_from_minor, c.commission_to_minor, c.actor) for c in changes] == [
        (549, 438, "source:2")
    ]
    assert "49.90 -> 39.90 EUR" in changes[0].reason
    assert [(e.event_type, e.event_key, e.detail) for e in events] == [
        ("charge.refunded", "evt_1", "amount lowered to 39.90 EUR")
    ]
    assert (stats.conversions, stats.revenue_minor, stats.commission_minor) == (1, 3990, 438)
    assert [m.event for m in messages] == ["conversion.updated"]
    # The ledger holds what the conversion earns now, booked once (it had no entry before).
    assert ledger == [438]
