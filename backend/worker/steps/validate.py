"""Validate: what an event refers to must still exist. The edge checked the events' shape; a
link may be gone by the time its click is written (``RejectReason.UNKNOWN_LINK``), and an event
the edge refused arrives as a ``RejectedEvent`` to keep."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
from msgspec.structs import astuple

from backend.domain.events import (
    MAX_REJECTED_PAYLOAD,
    ClickEvent,
    ClickEventC3,
    ConversionEvent,
    ImpressionEvent,
    NetworkEvent,
    QueuedEvent,
    RejectedEvent,
    RejectReason,
    Source,
)
from backend.storage.catalog import Catalog, LinkInfo
from backend.worker.batch import CLICK_COLUMNS, IMPRESSION_COLUMNS, Row


@dataclass(slots=True)
class Validated:
    """A batch's events that refer to what exists, clicks and impressions with their link."""

    clicks: list[tuple[ClickEvent, LinkInfo]] = field(default_factory=list)
    impressions: list[tuple[ImpressionEvent, LinkInfo]] = field(default_factory=list)
    conversions: list[ConversionEvent] = field(default_factory=list)
    # A conversion source's postbacks by their sale's event id (the sale is in ``conversions``).
    network: dict[str, NetworkEvent] = field(default_factory=dict)


async def validate(events: list[QueuedEvent], catalog: Catalog, rejected: list[Row]) -> Validated:
    """The events whose link exists (conversions are attributed next, whatever they name);
    the others, and the events refused at the edge, go to ``rejected``."""
    valid = Validated()
    links: dict[int, LinkInfo | None] = {}  # the catalog's cache costs more than a dict
    for queued in events:
        event = queued.upgraded() if isinstance(queued, ClickEventC3) else queued
        if isinstance(event, ClickEvent | ImpressionEvent):
            if event.link_id not in links:
                links[event.link_id] = await catalog.link_by_id(event.link_id)
            link = links[event.link_id]
            if link is None:
                rejected.append(_rejected_from(event, RejectReason.UNKNOWN_LINK, "link deleted"))
            elif isinstance(event, ClickEvent):
                valid.clicks.append((event, link))
            else:
                valid.impressions.append((event, link))
        elif isinstance(event, ConversionEvent):
            valid.conversions.append(event)
        elif isinstance(event, NetworkEvent):
            valid.conversions.append(event.sale)
            valid.network[event.sale.event_id] = event
        else:
            rejected.append(rejected_row(event))
    return valid


def rejected_row(event: RejectedEvent) -> Row:
    return {
        "event_id": event.event_id,
        "at_ms": event.at_ms,
        "source": event.source.value,
        "reason": event.reason.value,
        "detail": event.detail,
        "payload": event.payload,
    }


def _rejected_from(event: ClickEvent | ImpressionEvent, reason: RejectReason, detail: str) -> Row:
    """A click or an impression kept as rejected: its row by column (not its network prefix)."""
    columns = CLICK_COLUMNS if isinstance(event, ClickEvent) else IMPRESSION_COLUMNS
    row = dict(zip(columns, astuple(event)[: len(columns)], strict=True))
    return rejected_row(
        RejectedEvent(
            event_id=row[columns[0]][:64],
            at_ms=event.at_ms,
            source=Source.REDIRECT if isinstance(event, ClickEvent) else Source.JS,
            reason=reason,
            detail=detail,
            payload=msgspec.json.encode(row).decode()[:MAX_REJECTED_PAYLOAD],
        )
    )
