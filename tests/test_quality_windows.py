"""The quality script on its own, against the real Redis: its answers follow the rules the
module states (a model of them, with nothing bounded, on random batches with late arrivals,
replays, ties and midnights), and its edges: ties, late clicks, replays, a visitor on many links,
many clicks in one batch, where the bound on a window shows, and a network prefix's windows (one
address rotating user agents, a NAT).
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis

from backend.core.clock import DAY_MS
from backend.domain.quality.windows import (
    DUPLICATE,
    DUPLICATE_MS,
    EVENTS_PER_CALL,
    FIRST_LINKS,
    KEEP_CLICKS,
    LINK_LIMIT,
    LINK_WINDOW_MS,
    PARTNER_LIMIT,
    PARTNER_WINDOW_MS,
    PREFIX_BURST,
    PREFIX_DUPLICATE,
    PREFIX_DUPLICATE_LIMIT,
    PREFIX_KEEP,
    PREFIX_LIMIT,
    PREFIX_LINK_LIMIT,
    PREFIX_PARTNER_LIMIT,
    PREFIX_RATE_LIMITED_LINK,
    PREFIX_RATE_LIMITED_PARTNER,
    PREFIX_WINDOW_MS,
    RATE_LIMITED_LINK,
    RATE_LIMITED_PARTNER,
    REPLAY_GRACE_MS,
    UNIQUE,
    Counter,
    Questions,
)
from backend.storage.redis_server import EmbeddedRedis

T0 = 1_790_000_000_000  # 14:13 UTC
PARTNER, VISITOR, PREFIX = 7, "a" * 32, "198.51.100.0/24"
WINDOW_BITS = DUPLICATE | RATE_LIMITED_LINK | RATE_LIMITED_PARTNER
PREFIX_BITS = PREFIX_DUPLICATE | PREFIX_RATE_LIMITED_LINK | PREFIX_RATE_LIMITED_PARTNER

Click = tuple[str, int, int, int, str, str]  # id, time, link, partner, visitor, prefix
Impression = tuple[str, int, int, str]  # id, time, link, visitor
Conversion = tuple[str, int, int, str]  # id, time, merchant, prefix
Batch = tuple[list[Click], list[Impression], list[Conversion]]


@pytest.fixture
def counter(redis: Redis) -> Counter:
    return Counter(redis)


async def answer(counter: Counter, batch: Batch) -> tuple[list[int], list[int], list[int]]:
    questions = Questions()
    clicks, impressions, conversions = batch
    for click in clicks:
        questions.click(*click)
    for impression in impressions:
        questions.impression(*impression)
    for conversion in conversions:
        questions.conversion(*conversion)
    return await counter.answer(questions)


async def click_bits(counter: Counter, clicks: list[Click]) -> list[int]:
    return (await answer(counter, (clicks, [], [])))[0]


def clicks_on(
    links: list[int], start_ms: int, every_ms: int, *, rotating: bool = False, prefix: str = ""
) -> list[Click]:
    """One visitor's clicks on the partner's ``links`` in turn, ``every_ms`` apart (without a
    network prefix unless given); ``rotating``: a new visitor each time (one address rotating
    its user agent)."""
    times = range(start_ms, start_ms + len(links) * every_ms, every_ms)
    return [
        (f"c{at_ms}", at_ms, link, PARTNER, f"{at_ms:032x}" if rotating else VISITOR, prefix)
        for at_ms, link in zip(times, links, strict=True)
    ]


Entry = tuple[int, int]  # a prefix's window entry: time in the day and visitor, link


def prefix_key(at_ms: int, visitor: str) -> int:
    """A click's key in its prefix's window: the time in its day, then the visitor's end."""
    return at_ms % DAY_MS << 24 | int.from_bytes(visitor.encode()[-3:].ljust(3, b"\0"), "big")


def time_of(entry: Entry) -> int:
    return entry[0] >> 24


@dataclass
class Model:
    """The rules as the module docstring states them, nothing bounded. ``clicks`` answers None
    for the window bits where the script may differ: a click that ``KEEP_CLICKS -
    PARTNER_LIMIT`` recorded clicks come after, or that is more than the grace older than the
    visitor's latest on the partner."""

    windows: dict[tuple[int, str, int], list[tuple[int, bytes]]] = field(default_factory=dict)
    firsts: dict[tuple[str, int, int, str], str] = field(default_factory=dict)
    prefixes: dict[tuple[int, str], list[tuple[int, bytes]]] = field(default_factory=dict)
    on_partners: dict[tuple[int, int, str], list[Entry]] = field(default_factory=dict)

    def first(self, kind: str, event_id: str, at_ms: int, link: int, visitor: str) -> int:
        first = self.firsts.setdefault((kind, at_ms // DAY_MS, link, visitor), event_id)
        return UNIQUE if first == event_id else 0

    def click(self, click: Click) -> tuple[int, int | None]:
        click_id, at_ms, link, partner, visitor, _ = click
        entries = self.windows.setdefault((partner, visitor, at_ms // DAY_MS), [])
        entry = (at_ms, f"{link}:{click_id}".encode())
        rank = bisect.bisect_left(entries, entry)
        if rank == len(entries) or entries[rank] != entry:
            entries.insert(rank, entry)
        later = len(entries) - rank - 1
        if later >= KEEP_CLICKS - PARTNER_LIMIT or at_ms < entries[-1][0] - REPLAY_GRACE_MS:
            window: int | None = None
        else:
            window = self.judge(entries[max(0, rank - PARTNER_LIMIT) : rank], entry)
        return self.first("click", click_id, at_ms, link, visitor), window

    @staticmethod
    def judge(earlier: list[tuple[int, bytes]], entry: tuple[int, bytes]) -> int:
        at_ms, member = entry
        link = member.split(b":")[0]
        bits = on_partner = on_link = 0
        for time, other in reversed(earlier):
            age = at_ms - time
            if age >= PARTNER_WINDOW_MS:
                break
            on_partner += 1
            if age < LINK_WINDOW_MS and other.split(b":")[0] == link:
                if on_link == 0 and age < DUPLICATE_MS:
                    bits |= DUPLICATE
                on_link += 1
        if on_link >= LINK_LIMIT:
            bits |= RATE_LIMITED_LINK
        if on_partner >= PARTNER_LIMIT:
            bits |= RATE_LIMITED_PARTNER
        return bits

    def prefix_click(self, click: Click) -> int | None:
        """The bits of the prefix's windows, or None where the script may differ (as for a
        visitor's window: beyond the bound of the prefix's window)."""
        _, at_ms, link, partner, visitor, prefix = click
        if not prefix:
            return 0
        entries = self.on_partners.setdefault((partner, at_ms // DAY_MS, prefix), [])
        entry = (prefix_key(at_ms, visitor), link)
        rank = bisect.bisect_left(entries, entry)
        if rank == len(entries) or entries[rank] != entry:
            entries.insert(rank, entry)
        at, newest = time_of(entry), time_of(entries[-1])
        if len(entries) - rank - 1 >= PREFIX_KEEP - PREFIX_PARTNER_LIMIT:
            return None
        if at < newest - REPLAY_GRACE_MS:
            return None
        earlier = entries[max(0, rank - PREFIX_PARTNER_LIMIT) : rank]
        bits = 0
        if len(earlier) == PREFIX_PARTNER_LIMIT and at - time_of(earlier[0]) < PARTNER_WINDOW_MS:
            bits |= PREFIX_RATE_LIMITED_PARTNER
        ages = sorted(at - time_of(e) for e in earlier if e[1] == link)  # the latest first
        on_link = [age for age in ages if age < LINK_WINDOW_MS]
        duplicate = PREFIX_DUPLICATE_LIMIT
        if len(on_link) >= duplicate and on_link[duplicate - 1] < DUPLICATE_MS:
            bits |= PREFIX_DUPLICATE
        if len(on_link) >= PREFIX_LINK_LIMIT:
            bits |= PREFIX_RATE_LIMITED_LINK
        return bits

    def conversion(self, conversion: Conversion) -> int:
        event_id, at_ms, merchant, prefix = conversion
        if not prefix:
            return 0
        entries = self.prefixes.setdefault((merchant, prefix), [])
        entry = (at_ms, event_id.encode())
        rank = bisect.bisect_left(entries, entry)
        if rank == len(entries) or entries[rank] != entry:
            entries.insert(rank, entry)
        if rank >= PREFIX_LIMIT and at_ms - entries[rank - PREFIX_LIMIT][0] < PREFIX_WINDOW_MS:
            return PREFIX_BURST
        return 0


def scenario(rng: random.Random) -> list[Batch]:
    """Batches of clicks, impressions and conversions by a few visitors, some sharing a network
    prefix, on a few links, some of them late, at the same millisecond or across midnight, and
    some batches delivered again; some scenarios are storms."""
    storm = rng.random() < 0.3  # many clicks on few links, so that a prefix's limits are reached
    links = rng.randrange(2, 5 if storm else 24)
    partner_of = {link: rng.randrange(1, 3) for link in range(1, links)}
    visitors = [f"v{number}" for number in range(rng.randrange(1, 9))]
    prefix_of = {visitor: rng.choice(["p1", "p1", "p2", ""]) for visitor in visitors}
    steps = [0, 0, 1, 2_000, 9_999, 10_000, 30_000, 70_000, 600_000, 3_600_000]
    if storm:
        steps = [0, 1, 300, 2_000, 9_999]
    at_ms = (T0 // DAY_MS + 1) * DAY_MS - rng.randrange(0, 4 * 3_600_000)
    batches: list[Batch] = []
    for number in range(rng.randrange(1, 12)):
        if batches and rng.random() < 0.2:
            batches.append(batches[-rng.randrange(1, min(3, len(batches)) + 1)])
            continue
        batch: Batch = ([], [], [])
        for _ in range(rng.randrange(1, 200 if storm else 50)):
            at_ms += rng.choice(steps)
            when = at_ms - (rng.randrange(0, 300_000) if rng.random() < 0.1 else 0)
            # ids that share a beginning, so that ties are broken by their bytes
            event_id = "".join(rng.choices("-_0aZ", k=rng.randrange(0, 3))) + f"{number}.{when}"
            link, visitor = rng.choice(list(partner_of)), rng.choice(visitors)
            kind = rng.random()
            if kind < 0.8:
                batch[0].append(
                    (event_id, when, link, partner_of[link], visitor, prefix_of[visitor])
                )
            elif kind < 0.9:
                batch[1].append((event_id, when, link, visitor))
            else:
                batch[2].append((event_id, when, link % 2, rng.choice(["p1", "p2", ""])))
        batches.append(batch)
    return batches


async def test_answers_follow_the_rules_on_random_batches(counter: Counter, redis: Redis) -> None:
    compared = prefix_compared = 0
    prefix_flagged = dict.fromkeys(
        (PREFIX_DUPLICATE, PREFIX_RATE_LIMITED_LINK, PREFIX_RATE_LIMITED_PARTNER), 0
    )
    for seed in range(150):
        model = Model()
        await redis.flushall()
        for batch in scenario(random.Random(seed)):
            clicks, impressions, conversions = await answer(counter, batch)
            for click, bits in zip(batch[0], clicks, strict=True):
                unique, window = model.click(click)
                assert bits & UNIQUE == unique, (seed, click)
                if window is not None:
                    assert bits & WINDOW_BITS == window, (seed, click)
                    compared += 1
                prefix_window = model.prefix_click(click)
                if prefix_window is not None:
                    assert bits & PREFIX_BITS == prefix_window, (seed, click)
                    prefix_compared += 1
                    for bit in prefix_flagged:
                        prefix_flagged[bit] += bool(prefix_window & bit)
            expected = [model.first("impression", *impression) for impression in batch[1]]
            assert impressions == expected, seed
            assert conversions == [model.conversion(c) for c in batch[2]], seed
    assert compared > 10_000
    assert prefix_compared > 10_000
    assert min(prefix_flagged.values()) > 100, prefix_flagged


async def test_a_late_click_is_judged_by_the_clicks_before_it_in_time(counter: Counter) -> None:
    late = ("late", T0 + 5_000, 1, PARTNER, VISITOR, "")
    assert await click_bits(counter, [("first", T0 + 20_000, 1, PARTNER, VISITOR, "")]) == [UNIQUE]
    # unique was the first to arrive; nothing came before the late click in time
    assert await click_bits(counter, [late]) == [0]
    assert await click_bits(counter, [("next", T0 + 12_000, 1, PARTNER, VISITOR, "")]) == [
        DUPLICATE
    ]


async def test_clicks_at_one_millisecond_are_in_the_byte_order_of_link_and_id(
    counter: Counter,
) -> None:
    # '7:-b' sorts before '7:Aa' as bytes (a locale's collation could put it after)
    second, first = ("Aa", T0, 7, PARTNER, VISITOR, ""), ("-b", T0, 7, PARTNER, VISITOR, "")
    assert await click_bits(counter, [second, first]) == [UNIQUE, 0]
    assert await click_bits(counter, [second, first]) == [UNIQUE | DUPLICATE, 0]


async def test_a_batch_replayed_after_later_clicks_gets_the_same_answers(
    counter: Counter,
) -> None:
    storm = clicks_on([1] * 12, T0, 1_000)
    answered = await click_bits(counter, storm)
    await click_bits(counter, clicks_on([1, 2] * 20, T0 + 60_000, 1_000))
    assert await click_bits(counter, storm) == answered
    assert answered == [UNIQUE] + [DUPLICATE] * 9 + [DUPLICATE | RATE_LIMITED_LINK] * 2


async def test_uniqueness_stays_exact_for_a_visitor_on_more_links_than_a_visit_holds(
    counter: Counter,
) -> None:
    links = list(range(1, FIRST_LINKS + 6))
    firsts = clicks_on(links, T0, 20_000)
    seconds = clicks_on(links, T0 + 3_600_000, 20_000)
    assert await click_bits(counter, firsts) == [UNIQUE] * len(links)
    assert await click_bits(counter, seconds) == [0] * len(links)
    assert await click_bits(counter, firsts[::-1]) == [UNIQUE] * len(links)


async def test_many_clicks_of_one_visitor_in_one_batch_are_judged_as_one_by_one(
    counter: Counter, redis: Redis
) -> None:
    clicks = clicks_on(list(range(1, 21)) * 15, T0, 5_000)  # 300, a link every 100 s
    together = await click_bits(counter, clicks)
    await redis.flushall()
    apart = [bits for click in clicks for bits in await click_bits(counter, [click])]
    assert together == apart
    assert together == [UNIQUE] * 20 + [0] * 30 + [RATE_LIMITED_PARTNER] * 250


async def test_a_window_keeps_enough_clicks_to_replay_one_until_its_bound(
    counter: Counter,
) -> None:
    """A replay is judged on the clicks before it until ``KEEP_CLICKS - PARTNER_LIMIT`` later
    clicks of its visitor on the partner have come: beyond that, only an abuser's replay."""
    clicks = clicks_on(list(range(1, 21)) * 6, T0, 10_000)  # 120, all within the hour
    replayed = clicks[59]
    answered = await click_bits(counter, clicks[:60])
    assert answered[59] == RATE_LIMITED_PARTNER
    later = KEEP_CLICKS - PARTNER_LIMIT
    await click_bits(counter, clicks[60 : 60 + later - 1])
    assert await click_bits(counter, [replayed]) == [RATE_LIMITED_PARTNER]
    await click_bits(counter, [clicks[60 + later - 1]])
    assert await click_bits(counter, [replayed]) == [0]


async def test_a_batch_larger_than_one_script_call_is_answered_as_one(counter: Counter) -> None:
    """A batch of more than ``EVENTS_PER_CALL`` events goes to Redis in several calls, in
    order: an event after the cut is judged by those before it, and a replay of the whole batch
    by what it wrote."""
    others = [
        (f"o{n}", T0 + n, 1, PARTNER, f"{n:032x}", "") for n in range(EVENTS_PER_CALL - 1)
    ]  # one click each by other visitors, all unique
    first = ("first", T0 + EVENTS_PER_CALL, 1, PARTNER, VISITOR, "")  # the last of the first call
    double = ("double", T0 + EVENTS_PER_CALL + 2_000, 1, PARTNER, VISITOR, "")  # the first after
    clicks = [*others, first, double]

    bits = await click_bits(counter, clicks)
    replayed = await click_bits(counter, clicks)

    assert len(bits) == len(clicks)
    assert all(answer == UNIQUE for answer in bits[:-1])
    assert bits[-1] & DUPLICATE
    assert not bits[-1] & UNIQUE
    assert replayed == bits


async def test_a_redis_that_forgot_the_script_is_given_it_again(
    counter: Counter, redis: Redis
) -> None:
    """A restarted Redis has no scripts: the calls of a batch run again once it has it."""
    clicks = [(f"c{n}", T0 + n, 1, PARTNER, f"{n:032x}", "") for n in range(EVENTS_PER_CALL + 1)]
    await redis.script_flush()

    assert await click_bits(counter, clicks) == [UNIQUE] * len(clicks)
    assert await click_bits(counter, clicks) == [UNIQUE] * len(clicks)  # a replay finds itself


async def test_one_address_rotating_user_agents_is_counted_by_its_prefix(
    counter: Counter,
) -> None:
    """Each user agent makes a new visitor, so the visitor's windows see one click each; the
    prefix's see them all: from the sixth within ten seconds, and past fifty in ten minutes."""
    rotating = clicks_on([1] * 60, T0, 1_000, rotating=True)
    assert await click_bits(counter, rotating) == [UNIQUE] * 60

    rotating = clicks_on([1] * 60, T0 + DAY_MS, 1_000, rotating=True, prefix=PREFIX)
    assert await click_bits(counter, rotating) == (
        [UNIQUE] * PREFIX_DUPLICATE_LIMIT
        + [UNIQUE | PREFIX_DUPLICATE] * (PREFIX_LINK_LIMIT - PREFIX_DUPLICATE_LIMIT)
        + [UNIQUE | PREFIX_DUPLICATE | PREFIX_RATE_LIMITED_LINK] * (60 - PREFIX_LINK_LIMIT)
    )


async def test_rotating_over_a_partners_links_is_counted_by_its_prefix(counter: Counter) -> None:
    """Slowly enough for each link (a click every 13 s over ten links), but more than the
    prefix's limit on the partner's links within the hour."""
    links = list(range(1, 11)) * 26
    clicks = clicks_on(links[: PREFIX_PARTNER_LIMIT + 1], T0, 13_000, rotating=True, prefix=PREFIX)
    assert await click_bits(counter, clicks) == [UNIQUE] * PREFIX_PARTNER_LIMIT + [
        UNIQUE | PREFIX_RATE_LIMITED_PARTNER
    ]


async def test_the_people_behind_one_nat_stay_under_the_prefixs_limits(counter: Counter) -> None:
    """An office or a carrier's NAT: a click every 15 s for an hour on four links, and five
    people on another link within ten seconds; a sixth there is a prefix's duplicate."""
    steady = clicks_on([1, 2, 3, 4] * 60, T0, 15_000, rotating=True, prefix=PREFIX)
    rush = clicks_on([9] * 6, T0 + 1_800_001, 1_900, rotating=True, prefix=PREFIX)
    assert await click_bits(counter, steady) == [UNIQUE] * 240
    assert await click_bits(counter, rush) == [UNIQUE] * 5 + [UNIQUE | PREFIX_DUPLICATE]


async def test_a_prefixs_windows_expire_the_grace_after_their_day(
    counter: Counter, redis: Redis
) -> None:
    """The prefix is kept in Redis for its day's windows only, not the two days of a visit."""
    await click_bits(counter, clicks_on([1], T0, 1, prefix=PREFIX))
    day = T0 // DAY_MS
    expected_s = ((day + 1) * DAY_MS + REPLAY_GRACE_MS - T0) / 1000
    assert expected_s - 60 < await redis.ttl(f"ct:n:{PARTNER}:{day}") <= expected_s


async def test_a_prefixs_windows_are_kept_in_memory_only(
    counter: Counter, redis: Redis, redis_server: EmbeddedRedis
) -> None:
    """Heuristics, not records: their writes do not reach the append-only file."""
    prefix = "2001:db8:7e57::/48"  # no other test's
    (aof,) = redis_server.directory.glob("*.aof")
    written_before = aof.stat().st_size
    await click_bits(counter, clicks_on([1, 2], T0, 1_000, prefix=prefix))
    windows = [field async for field, _ in redis.hscan_iter(f"ct:n:{PARTNER}:{T0 // DAY_MS}")]
    assert prefix.encode() in windows
    with aof.open("rb") as file:
        file.seek(written_before)
        appended = file.read()
    assert prefix.encode() not in appended
    assert f"ct:v:{PARTNER}:".encode() in appended  # the visits are written there
