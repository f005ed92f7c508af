"""What a store's event does to the conversion it names, in the worker's batch transaction.

Each store event (Stripe's or Shopify's event id) is recorded once per source in
``store_events`` with the conversion it created or changed: the record is what the conversion
page shows, and inserting it first (``ON CONFLICT DO NOTHING``) is what makes a retried delivery
change nothing. A refund that leaves part of the order lowers the conversion's amount and its
commission in proportion (``lower_amount``); a full refund, a dispute or a cancellation moves
its status through the status rules (``backend.domain.affiliate.status``), as the source's
``NetworkEvent.status`` says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Table, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import HOUR_MS
from backend.core.money import format_minor
from backend.domain.affiliate.ledger import record_commission_change
from backend.domain.affiliate.outbox import FIELDS, UPDATED, enqueue
from backend.domain.affiliate.status import change_row, network_source
from backend.domain.events import NetworkEvent
from backend.storage.db.models import Conversion, ConversionChange, StoreEvent
from backend.storage.rollups.by_dimension import mark_for_refold
from backend.storage.rollups.hourly import add_deltas, conversion_delta
from backend.storage.rollups.measures import COUNTED

STORE_EVENTS: Table = StoreEvent.__table__  # type: ignore[assignment]
_CONVERSIONS: Table = Conversion.__table__  # type: ignore[assignment]


def store_event_parts(store_event: str) -> tuple[str, str, str]:
    """``(kind, type, id)`` of a ``NetworkEvent.store_event``."""
    kind, _, rest = store_event.partition(" ")
    event_type, _, event_key = rest.partition(" ")
    return kind, event_type, event_key


def _stored(connection: Connection, merchant_id: int, order_id: str) -> Mapping[str, Any] | None:
    row = (
        connection.execute(
            select(*(_CONVERSIONS.c[name] for name in FIELDS), _CONVERSIONS.c.event_id)
            .where(_CONVERSIONS.c.merchant_id == merchant_id, _CONVERSIONS.c.order_id == order_id)
            .with_for_update()
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def record(connection: Connection, event: NetworkEvent, conversion_id: int, detail: str) -> bool:
    """Record the store's event against its conversion; False when it was recorded before."""
    _, event_type, event_key = store_event_parts(event.store_event)
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(STORE_EVENTS).on_conflict_do_nothing().returning(STORE_EVENTS.c.id)
    row = {
        "source_id": event.source_id,
        "event_key": event_key[:128],
        "event_type": event_type[:64],
        "conversion_id": conversion_id,
        "at_ms": event.sale.at_ms,
        "detail": detail[:255],
    }
    return connection.execute(statement, row).first() is not None


def apply_store_event(connection: Connection, event: NetworkEvent) -> None:
    """Record ``event`` against the conversion of its order and, once, lower the conversion's
    amount for a partial refund. The order is there: the webhook handler checked it, and
    conversions are never deleted."""
    sale = event.sale
    stored = _stored(connection, sale.merchant_id, sale.order_id or "")
    if stored is None:
        return
    currency = stored["currency"]
    wanted = stored["amount_minor"]
    if event.remaining_minor >= 0:
        wanted = min(wanted, event.remaining_minor)
    elif event.refund_minor > 0:
        wanted = max(0, wanted - event.refund_minor)
    if stored["event_id"] == sale.event_id:
        detail = "created the conversion"
    elif event.status:
        detail = f"status {event.status}"
    elif wanted != stored["amount_minor"]:
        detail = f"amount lowered to {format_minor(wanted, currency)} {currency}"
    else:
        detail = "changed nothing"
    if not record(connection, event, stored["id"], detail):
        return  # delivered before: changes nothing
    if wanted < stored["amount_minor"] and not event.status:
        reason = f"partial refund ({event.store_event})"
        lower_amount(connection, stored, wanted, network_source(event.source_id), reason)


def lower_amount(
    connection: Connection, stored: Mapping[str, Any], amount_minor: int, actor: str, reason: str
) -> int:
    """Lower a conversion's amount to ``amount_minor`` and its commission in proportion
    (rounded down, never below 0), with its audit row, the rollups moved with it and the
    outbox messages the change owes (``conversion.updated``) and the ledger's entry for the
    commission taken back, in the caller's transaction.
    ``stored``: the conversion's row (the outbox's ``FIELDS``). Return the commission's change
    (<= 0)."""
    before_amount: int = stored["amount_minor"]
    before: int = stored["commission_minor"]
    if amount_minor >= before_amount:
        return 0
    commission = before * amount_minor // before_amount if before_amount else 0
    connection.execute(
        update(_CONVERSIONS)
        .where(_CONVERSIONS.c.id == stored["id"])
        .values(amount_minor=amount_minor, commission_minor=commission)
    )
    currency = stored["currency"]
    said = (
        f"{reason}: amount {format_minor(before_amount, currency)} -> "
        f"{format_minor(amount_minor, currency)} {currency}"
    )
    status = stored["status"]
    audit = change_row(
        stored["id"], status, status, stored["verified"], actor, said, (before, commission)
    )
    connection.execute(insert(ConversionChange), [audit])
    changed = {**stored, "amount_minor": amount_minor, "commission_minor": commission}
    if status in COUNTED:
        add_deltas(
            connection,
            [
                conversion_delta(stored["at_ms"], stored["merchant_id"], stored, -1),
                conversion_delta(stored["at_ms"], stored["merchant_id"], changed, 1),
            ],
        )
        mark_for_refold(connection, [stored["at_ms"] // HOUR_MS * HOUR_MS])
    enqueue(connection, [changed], UPDATED)
    record_commission_change(connection, [stored["id"]], actor=actor, reason=said)
    return commission - before


async def events_of(session: AsyncSession, conversion_id: int) -> list[StoreEvent]:
    """The store events that created or changed a conversion, oldest first."""
    rows = await session.scalars(
        select(StoreEvent).where(StoreEvent.conversion_id == conversion_id).order_by(StoreEvent.id)
    )
    return list(rows)
