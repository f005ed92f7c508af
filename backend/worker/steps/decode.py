"""Decode: a batch's stream entries into events, each with its place in the stream (which
names it if it later fails). What does not decode is a dead letter, ``RejectReason.POISON``;
the rest of its entry is read."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from backend.domain.events import QueuedEvent, decode_entry, decode_event
from backend.storage.streams.entries import split_entry
from backend.worker.batch import Row
from backend.worker.dead_letter import Place, entry_poison, place_name, poison_row
from backend.worker.stream import Entry


@dataclass(slots=True)
class Decoded:
    events: list[QueuedEvent] = field(default_factory=list)
    places: list[Place] = field(default_factory=list)  # one per event
    poisons: list[Row] = field(default_factory=list)


def decode(entries: list[Entry]) -> Decoded:
    """Each entry decoded whole, or event by event when that fails."""
    decoded = Decoded()
    for entry in entries:
        try:
            events = decode_entry(entry.payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            _decode_apart(entry, decoded)
        else:
            decoded.events += events
            decoded.places += [(entry.entry_id, index) for index in range(len(events))]
    return decoded


def _decode_apart(entry: Entry, decoded: Decoded) -> None:
    """The events of an entry that does not decode as a whole, one by one; the parts that are
    not events are poison."""
    try:
        parts = split_entry(entry.payload)
    except msgspec.DecodeError as error:
        decoded.poisons.append(entry_poison(entry, f"undecodable entry: {error}"))
        return
    for index, part in enumerate(parts):
        try:
            decoded.events.append(decode_event(part))
            decoded.places.append((entry.entry_id, index))
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            detail = f"undecodable event: {error}"
            decoded.poisons.append(poison_row(place_name(entry.entry_id, index), part, detail))
