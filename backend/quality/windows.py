"""Counting per visitor and per network prefix in Redis: one script call per batch.

For each event of a batch the script answers with a few bits:
- ``UNIQUE``: the visitor's first click (impression) on the link that UTC day. One hash per
  (kind, day, link) maps each visitor hash to its first id (HSETNX); a replayed id finds
  itself. A hash per link and day, not a key per visitor: creating a key with its own expiry
  for every visitor cost Redis more than the rest of the script.
- ``DUPLICATE``: the visitor clicked the same link less than ``DUPLICATE_MS`` before.
- ``RATE_LIMITED_LINK`` / ``RATE_LIMITED_PARTNER``: more than ``LINK_LIMIT`` clicks of the
  visitor on the link within ``LINK_WINDOW_MS``, or more than ``PARTNER_LIMIT`` on the
  partner's links within ``PARTNER_WINDOW_MS``. Both are read from the partner's window, so
  the link's is judged among the visitor's last ``PARTNER_LIMIT`` clicks on the partner.
- ``PREFIX_BURST``: more than ``PREFIX_LIMIT`` conversions from one network prefix for one
  merchant within ``PREFIX_WINDOW_MS``.

A window is a sorted set per (partner, visitor hash) or (merchant, network prefix), never an
address, scored by event time. An event is judged by the entries before it in (time, member)
order, not by whatever the set holds now, so a batch delivered again (a crash between commit
and XACK) gets the same answers whatever came after it, as long as it is replayed within
``REPLAY_GRACE_MS``: only entries that much older than their window are pruned. Event times,
not the clock, decide, so a backlog is judged as it happened. The visitor hash changes with
the daily salt, so a visitor's windows start afresh at midnight UTC.

The script takes the whole batch inside one msgpack argument, six short values per event (the
ids it is about and the visitor), and builds the key names itself: passed as separate
arguments, three names per click cost redis-py more to pack than the script costs Redis to
run. It therefore needs one Redis server, not a cluster (DESIGN §6 runs a single Redis with AOF).
"""

from __future__ import annotations

from string import Template

import msgspec
from redis.asyncio import Redis

UNIQUE = 1
DUPLICATE = 2
RATE_LIMITED_LINK = 4
RATE_LIMITED_PARTNER = 8
PREFIX_BURST = 16

DUPLICATE_MS = 10_000
LINK_LIMIT, LINK_WINDOW_MS = 10, 600_000
PARTNER_LIMIT, PARTNER_WINDOW_MS = 50, 3_600_000
PREFIX_LIMIT, PREFIX_WINDOW_MS = 5, 3_600_000
UNIQUE_TTL_S = 2 * 86_400  # a day's uniqueness hash outlives its last write by this
REPLAY_GRACE_MS = 900_000
PRUNE_FROM_RANK = 128  # sets are pruned once this many entries precede the new one

DAY_MS = 86_400_000
_CLICK, _IMPRESSION, _CONVERSION = 1, 2, 3
_STRIDE = 6  # kind, id, time, then per kind: link, partner, visitor hash (click);
# link, 0, visitor hash (impression); merchant, 0, network prefix or "" (conversion)

_SCRIPT = Template("""
local events = cmsgpack.unpack(ARGV[1])
local answers = {}

local firsts = {}  -- the uniqueness hashes this call wrote to, given their expiry at the end

-- ``replayed``: whether the id may have been seen before (a click placed anew in its window
-- was not: that saves reading back the first id for every later click of a visitor).
local function first_seen(key, visitor, id, replayed)
  firsts[key] = true
  if redis.call('HSETNX', key, visitor, id) == 1
      or (replayed and redis.call('HGET', key, visitor) == id) then
    return $unique
  end
  return 0
end

-- Adds an entry to a window set; returns how many entries precede it by (time, member), and
-- whether it was there already (a replay).
local function place(key, member, at, window_ms)
  local added = redis.call('ZADD', key, at, member) == 1
  if added then
    redis.call('EXPIRE', key, $ttl_extra_s + window_ms / 1000)
  end
  local rank = redis.call('ZRANK', key, member)
  if rank >= $prune_from_rank then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (at - window_ms - $grace_ms))
    rank = redis.call('ZRANK', key, member)
  end
  return rank, not added
end

-- A click's verdict from the up to $partner_limit clicks of its visitor on the partner's
-- links just before it (members 'link id:click id', ``link`` is 'link id:'), the latest first.
local function judge_click(key, link, rank, at)
  local earlier = redis.call(
    'ZRANGE', key, math.max(0, rank - $partner_limit), rank - 1, 'WITHSCORES')
  local bits, on_partner, on_link = 0, 0, 0
  for j = #earlier - 1, 1, -2 do
    local age = at - tonumber(earlier[j + 1])
    if age >= $partner_window_ms then
      break
    end
    on_partner = on_partner + 1
    if age < $link_window_ms and string.sub(earlier[j], 1, #link) == link then
      if on_link == 0 and age < $duplicate_ms then
        bits = bits + $duplicate
      end
      on_link = on_link + 1
    end
  end
  if on_link >= $link_limit then
    bits = bits + $rate_limited_link
  end
  if on_partner >= $partner_limit then
    bits = bits + $rate_limited_partner
  end
  return bits
end

for i = 1, #events, $stride do
  local kind, id, at, of, partner, visitor = unpack(events, i, i + $stride - 1)
  local bits = 0
  if kind == $click then
    local window_key = 'ct:w:p:' .. partner .. ':' .. visitor
    local link = of .. ':'
    local rank, replayed = place(window_key, link .. id, at, $partner_window_ms)
    bits = first_seen('ct:u:c:' .. math.floor(at / $day_ms) .. ':' .. of, visitor, id, replayed)
    if rank > 0 then
      bits = bits + judge_click(window_key, link, rank, at)
    end
  elseif kind == $impression then
    bits = first_seen('ct:u:i:' .. math.floor(at / $day_ms) .. ':' .. of, visitor, id, true)
  elseif visitor ~= '' then
    local window_key = 'ct:w:x:' .. of .. ':' .. visitor
    local rank = place(window_key, id, at, $prefix_window_ms)
    if rank >= $prefix_limit then
      local back = rank - $prefix_limit
      local entry = redis.call('ZRANGE', window_key, back, back, 'WITHSCORES')
      if at - tonumber(entry[2]) < $prefix_window_ms then
        bits = $prefix_burst
      end
    end
  end
  answers[#answers + 1] = bits
end
for key in pairs(firsts) do
  redis.call('EXPIRE', key, $unique_ttl_s)
end
return answers
""").substitute(
    unique=UNIQUE,
    duplicate=DUPLICATE,
    rate_limited_link=RATE_LIMITED_LINK,
    rate_limited_partner=RATE_LIMITED_PARTNER,
    prefix_burst=PREFIX_BURST,
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
    stride=_STRIDE,
    day_ms=DAY_MS,
    click=_CLICK,
    impression=_IMPRESSION,
)

_encode = msgspec.msgpack.Encoder().encode


class Questions:
    """One batch's events as the script reads them, flat: one list extension per event.

    Bots' clicks and impressions are not asked about: they are neither unique nor billable.
    """

    __slots__ = ("clicks", "conversions", "impressions")

    def __init__(self) -> None:
        self.clicks: list[str | int] = []
        self.impressions: list[str | int] = []
        self.conversions: list[str | int] = []

    def click(
        self, click_id: str, at_ms: int, link_id: int, partner_id: int, visitor_hash: str
    ) -> None:
        self.clicks += (_CLICK, click_id, at_ms, link_id, partner_id, visitor_hash)

    def impression(self, event_id: str, at_ms: int, link_id: int, visitor_hash: str) -> None:
        self.impressions += (_IMPRESSION, event_id, at_ms, link_id, 0, visitor_hash)

    def conversion(self, event_id: str, at_ms: int, merchant_id: int, ip_prefix: str) -> None:
        """``ip_prefix`` may be empty (a postback): such a conversion is not counted."""
        self.conversions += (_CONVERSION, event_id, at_ms, merchant_id, 0, ip_prefix)


class Counter:
    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_SCRIPT)

    async def answer(self, questions: Questions) -> tuple[list[int], list[int], list[int]]:
        """The bits for each click, impression and conversion, in the order they were asked."""
        asked = questions.clicks + questions.impressions + questions.conversions
        if not asked:
            return [], [], []
        bits: list[int] = await self._script(args=[_encode(asked)])
        clicks = len(questions.clicks) // _STRIDE
        impressions = clicks + len(questions.impressions) // _STRIDE
        return bits[:clicks], bits[clicks:impressions], bits[impressions:]
