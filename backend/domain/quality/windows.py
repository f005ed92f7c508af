"""Counting per visitor and per network prefix in Redis: one script call per batch.

For each event of a batch the script answers with a few bits:
- ``UNIQUE``: the visitor's first click (impression) on the link that UTC day; a replayed id
  finds itself.
- ``DUPLICATE``: the visitor clicked the same link less than ``DUPLICATE_MS`` before.
- ``RATE_LIMITED_LINK`` / ``RATE_LIMITED_PARTNER``: more than ``LINK_LIMIT`` clicks of the
  visitor on the link within ``LINK_WINDOW_MS``, or more than ``PARTNER_LIMIT`` on the
  partner's links within ``PARTNER_WINDOW_MS``. Both are read from the partner's window, so
  the link's is judged among the visitor's last ``PARTNER_LIMIT`` clicks on the partner.
- ``PREFIX_DUPLICATE``, ``PREFIX_RATE_LIMITED_LINK``, ``PREFIX_RATE_LIMITED_PARTNER``: the same
  windows per network prefix (the /24 or /48), whatever the visitor: at least
  ``PREFIX_DUPLICATE_LIMIT`` clicks on the link from the prefix less than ``DUPLICATE_MS``
  before, more than ``PREFIX_LINK_LIMIT`` on the link within ``LINK_WINDOW_MS``, more than
  ``PREFIX_PARTNER_LIMIT`` on the partner's links within ``PARTNER_WINDOW_MS`` (the link's, as
  a visitor's, among the prefix's last ``PREFIX_PARTNER_LIMIT`` clicks on the partner). A
  visitor is an address and a user agent, so one address rotating user agents is a new visitor
  per click; its prefix is not. The limits are five times a visitor's, and a prefix's duplicates
  need five clicks in ten seconds, so the people behind one office or carrier NAT stay under
  them.
- ``PREFIX_BURST``: more than ``PREFIX_LIMIT`` conversions from one network prefix for one
  merchant within ``PREFIX_WINDOW_MS``.

A click is answered from its *visit*: one packed value per visitor hash in a hash per (partner,
UTC day), holding the first click id on each link and the latest clicks (the window, in (time,
'link:id') order). The script reads a batch's visits with one HMGET per hash and writes them
back with one HSET: a sorted set per visitor, with its own expiry, and a uniqueness hash per
link, each touched by a call per click, cost Redis twice the CPU (8 µs per event against 4). A
day's hash is all a window needs: the visitor hash changes with the daily salt, so a visitor's
windows start afresh at midnight UTC anyway. Impressions keep a uniqueness hash per (day, link),
conversions a sorted set per (merchant, prefix) scored by time (they are few, and a prefix's
window spans midnight).

A prefix's clicks on a partner's links are one value in a hash per (partner, UTC day): entries
of two doubles, the click's key (its time in the day, then its visitor) and its link, in that
order, so that one visitor's click on a link at one millisecond is one. The hash is read and
written once per batch as visits are; a click is judged on the entries where they lie (it
mostly goes last, and is judged by the few just before it, if any), the batch's own are
appended to a string, and a window keeps its newest ``PREFIX_KEEP`` clicks, none more than the
grace older than the newest one's window. This costs the script about what a visit does. The
windows are heuristics kept in memory only: their writes go neither to the append-only file nor
to replicas, and after a restart they start afresh. Like a visit's, they start afresh at
midnight UTC, and they expire ``REPLAY_GRACE_MS`` after their day: the prefix lives in Redis
for the day only, and never next to a visitor hash in the database.

An event is judged by the entries before it in (time, 'link:id') order, not by whatever the
value holds now, so a batch delivered again (a crash between commit and XACK) gets the same
answers whatever came after it, as long as it is replayed within ``REPLAY_GRACE_MS``. Event
times, not the clock, decide, so a backlog is judged as it happened. So that an abuser cannot
make a value long, a window keeps its newest ``KEEP_CLICKS`` clicks, none more than the grace
older than the newest one's window, and a visit holds the first ids of ``FIRST_LINKS`` links
(further links keep theirs in a hash per (day, link)). So a click replayed or arriving late once
``KEEP_CLICKS - PARTNER_LIMIT`` later clicks of its visitor on the partner are in (within the
grace: an abuser's) may be judged on fewer of the clicks before it.

The script takes the whole batch inside one msgpack argument, seven short values per event (the
ids it is about, the visitor and the network prefix), and builds the key names itself: passed as
separate arguments, three names per click cost redis-py more to pack than the script costs Redis
to run. It therefore needs one Redis server, not a cluster (DESIGN §6 runs a single Redis with AOF).
"""

from __future__ import annotations

import hashlib
from importlib.resources import files
from string import Template

import msgspec
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from backend.core.clock import DAY_MS, DAY_S, HOUR_MS

UNIQUE = 1
DUPLICATE = 2
RATE_LIMITED_LINK = 4
RATE_LIMITED_PARTNER = 8
PREFIX_BURST = 16
PREFIX_DUPLICATE = 32
PREFIX_RATE_LIMITED_LINK = 64
PREFIX_RATE_LIMITED_PARTNER = 128

DUPLICATE_MS = 10_000
LINK_LIMIT, LINK_WINDOW_MS = 10, 600_000
PARTNER_LIMIT, PARTNER_WINDOW_MS = 50, HOUR_MS
PREFIX_LIMIT, PREFIX_WINDOW_MS = 5, HOUR_MS
# Per network prefix, in the visitor's windows (an office or a carrier's NAT is many people)
PREFIX_DUPLICATE_LIMIT = 5
PREFIX_LINK_LIMIT = 5 * LINK_LIMIT
PREFIX_PARTNER_LIMIT = 5 * PARTNER_LIMIT
UNIQUE_TTL_S = 2 * DAY_S  # a day's uniqueness hash outlives its last write by this
REPLAY_GRACE_MS = 900_000
PRUNE_FROM_RANK = 128  # sets are pruned once this many entries precede the new one
KEEP_CLICKS = 2 * PARTNER_LIMIT  # a visit's window keeps its newest clicks, this many at least
FIRST_LINKS = 16  # links a visit holds the first click id of; further ones have a hash per link
PREFIX_KEEP = 2 * PREFIX_PARTNER_LIMIT  # a prefix's window keeps its newest clicks, this many
FIELDS_PER_CALL = 1000  # hash fields per HMGET or HSET, well within Lua's unpack limit

_CLICK, _IMPRESSION, _CONVERSION = 1, 2, 3
_STRIDE = 7  # kind, id, time, then per kind: link, partner, visitor hash (click);
# link, 0, visitor hash (impression); merchant, 0, "" (conversion); then the network prefix
# or "" (clicks and conversions; impressions "")

# The script, in ``windows.lua`` beside this module (its header documents its argument, its keys
# and the packed values it keeps), with this module's constants filled in once, at import.
_SCRIPT = Template(files(__package__).joinpath("windows.lua").read_text()).substitute(
    unique=UNIQUE,
    duplicate=DUPLICATE,
    rate_limited_link=RATE_LIMITED_LINK,
    rate_limited_partner=RATE_LIMITED_PARTNER,
    prefix_burst=PREFIX_BURST,
    prefix_duplicate=PREFIX_DUPLICATE,
    prefix_rate_limited_link=PREFIX_RATE_LIMITED_LINK,
    prefix_rate_limited_partner=PREFIX_RATE_LIMITED_PARTNER,
    prefix_duplicate_limit=PREFIX_DUPLICATE_LIMIT,
    prefix_link_limit=PREFIX_LINK_LIMIT,
    prefix_partner_limit=PREFIX_PARTNER_LIMIT,
    prefix_keep=PREFIX_KEEP,
    unique_ttl_s=UNIQUE_TTL_S,
    grace_ms=REPLAY_GRACE_MS,
    ttl_extra_s=REPLAY_GRACE_MS // 1000,
    prune_from_rank=PRUNE_FROM_RANK,
    duplicate_ms=DUPLICATE_MS,
    link_limit=LINK_LIMIT,
    link_window_ms=LINK_WINDOW_MS,
    partner_limit=PARTNER_LIMIT,
    partner_window_ms=PARTNER_WINDOW_MS,
    prefix_limit=PREFIX_LIMIT,
    prefix_window_ms=PREFIX_WINDOW_MS,
    keep=KEEP_CLICKS,
    first_links=FIRST_LINKS,
    per_call=FIELDS_PER_CALL,
    stride=_STRIDE,
    day_ms=DAY_MS,
    click=_CLICK,
    impression=_IMPRESSION,
    conversion=_CONVERSION,
)

_SHA = hashlib.sha1(_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
_encode = msgspec.msgpack.Encoder().encode
# Redis runs nothing else while a script runs, the web's group commits included: a call judges at
# most this many events (about 5 ms of Redis), whatever the batch size.
EVENTS_PER_CALL = 1000
_VALUES_PER_CALL = EVENTS_PER_CALL * _STRIDE


class Questions:
    """One batch's events as the script reads them, flat: one list extension per event of
    ``_STRIDE`` values, kind (``_CLICK``, ``_IMPRESSION``, ``_CONVERSION``), id and time, then
    link, partner and visitor hash (a click), link, 0 and visitor hash (an impression), or
    merchant, 0 and "" (a conversion), then the network prefix or "" (``windows.lua``'s header).

    Bots' clicks and impressions are not asked about: they are neither unique nor billable.
    """

    __slots__ = ("clicks", "conversions", "impressions")

    def __init__(self) -> None:
        self.clicks: list[str | int] = []
        self.impressions: list[str | int] = []
        self.conversions: list[str | int] = []

    def click(
        self,
        click_id: str,
        at_ms: int,
        link_id: int,
        partner_id: int,
        visitor_hash: str,
        ip_prefix: str,
    ) -> None:
        """``ip_prefix`` may be empty (no address): the click is then judged per visitor only."""
        self.clicks += (_CLICK, click_id, at_ms, link_id, partner_id, visitor_hash, ip_prefix)

    def impression(self, event_id: str, at_ms: int, link_id: int, visitor_hash: str) -> None:
        self.impressions += (_IMPRESSION, event_id, at_ms, link_id, 0, visitor_hash, "")

    def conversion(self, event_id: str, at_ms: int, merchant_id: int, ip_prefix: str) -> None:
        """``ip_prefix`` may be empty (a postback): such a conversion is not counted."""
        self.conversions += (_CONVERSION, event_id, at_ms, merchant_id, 0, "", ip_prefix)


class Counter:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def _run(self, calls: list[bytes]) -> list[list[int]]:
        """The calls in one pipeline: they leave together, so Redis starts the next one without
        waiting for the worker to read the last one's answer, and runs them in order."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.execute_command("EVALSHA", _SHA, 0, call)
            answered: list[list[int]] = await pipe.execute()
            return answered

    async def answer(self, questions: Questions) -> tuple[list[int], list[int], list[int]]:
        """The bits for each click, impression and conversion, in the order they were asked.

        Each call answers a msgpack array of one integer per event it was given (the bits
        above, OR-ed); the calls' answers are joined, then cut at the kinds' counts."""
        asked = questions.clicks + questions.impressions + questions.conversions
        if not asked:
            return [], [], []
        calls = [
            _encode(asked[start : start + _VALUES_PER_CALL])
            for start in range(0, len(asked), _VALUES_PER_CALL)
        ]
        try:
            answered = await self._run(calls)
        except NoScriptError:  # a restarted Redis: the calls are judged alike when run again
            await self._redis.script_load(_SCRIPT)
            answered = await self._run(calls)
        bits: list[int] = []
        for each in answered:
            bits += each
        clicks = len(questions.clicks) // _STRIDE
        impressions = clicks + len(questions.impressions) // _STRIDE
        return bits[:clicks], bits[clicks:impressions], bits[impressions:]
