"""Stream entries: one entry holds the events of one group commit, as a msgpack array of the
events as each was encoded, so Redis and the worker handle one entry id, reply and
acknowledgement per group instead of per event. What an event is, is ``backend.domain.events``'
business; this module only packs and unpacks them."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

MAX_ENTRY_EVENTS = 500  # events in one stream entry at most

_encoder = msgspec.msgpack.Encoder()
_parts_decoder = msgspec.msgpack.Decoder(list[msgspec.Raw])
_ARRAY_16, _ARRAY_32 = 0xDC, 0xDD


def encode_entry(payloads: Iterable[bytes]) -> bytes:
    """One stream entry holding encoded events."""
    return _encoder.encode([msgspec.Raw(payload) for payload in payloads])


def split_entry(data: bytes) -> list[bytes]:
    """An entry's encoded events one by one, to tell the good from the bad. Raise
    ``msgspec.DecodeError`` when the entry is not even an array."""
    return [bytes(part) for part in _parts_decoder.decode(data)]


def entry_size(data: bytes) -> int:
    """How many events an entry holds, from its msgpack header alone (to size batches); 1 for
    what is not an array (one undecodable part)."""
    first = data[0] if data else 0
    if 0x90 <= first <= 0x9F:
        return first & 0x0F
    if first in (_ARRAY_16, _ARRAY_32):
        return int.from_bytes(data[1 : 3 if first == _ARRAY_16 else 5], "big")
    return 1
