"""Dead letters: what cannot be read, or failed too often, kept in ``rejected_events`` with the
reason ``poison``, idempotent by its place in the stream (the entry id, and ``/index`` for an
event in it). Its network prefix never reaches the database (``storable``)."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import msgspec

from backend.domain.events import QueuedEvent, RejectReason, Source, encode_event, storable
from backend.storage.db.engine import Database
from backend.storage.streams.entries import split_entry
from backend.worker.batch import Row
from backend.worker.steps.write import REJECTED, insert_new
from backend.worker.stream import Entry

Place = tuple[str, int]  # an event's entry id and index in the entry: names a poison event


def place_name(entry_id: str, index: int) -> str:
    return f"{entry_id}/{index}"


def poison_row(place: str, payload: bytes, detail: str) -> Row:
    """A rejected row for a stream entry or an event in one (``place``: the entry id, and
    ``/index`` for an event), idempotent by its place."""
    return {
        "event_id": f"stream:{place}"[:64],
        "at_ms": int(place.split("-")[0]),  # a stream entry id starts with its time in ms
        "source": Source.UNKNOWN.value,
        "reason": RejectReason.POISON.value,
        "detail": detail[:500].replace("\x00", "\ufffd"),
        "payload": "base64:" + base64.b64encode(payload[:3000]).decode(),
    }


def entry_poison(entry: Entry, detail: str) -> Row:
    """A whole entry as one rejected row, when it cannot be taken apart into events."""
    return poison_row(entry.entry_id, entry.payload, detail)


def event_poison(place: Place, event: QueuedEvent, detail: str) -> Row:
    """An event that failed as it was decoded."""
    return poison_row(place_name(*place), storable(encode_event(event)), detail)


def entry_poisons(entry: Entry, detail: str) -> list[Row]:
    """Every event of ``entry`` as a rejected row (the entry whole if it is not an array)."""
    try:
        parts = split_entry(entry.payload)
    except msgspec.DecodeError:
        return [entry_poison(entry, detail)]
    return [
        poison_row(place_name(entry.entry_id, index), storable(part), detail)
        for index, part in enumerate(parts)
    ]


async def write_poison(database: Database, rows: Sequence[Row]) -> None:
    """Dead-letter rows from ``poison_row``."""
    if rows:
        await database.run_write(insert_new, REJECTED, "event_id", rows)
