"""Traffic quality: one test per flag. Flagged events are stored, never break a redirect, and
stay out of what is billed; the same batch delivered twice gets the same flags and counts.

Events with exact times are put on the stream directly (``deliver``); the worker judges them
by their own times, so windows are crossed without sleeping.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import func, select

from backend.core.clock import DAY_MS, MINUTE_MS
from backend.core.ids import new_event_id
from backend.core.settings import Settings
from backend.domain.events import ConversionEvent, QueuedEvent, Source, Visitor, encode_event
from backend.domain.quality.flags import Flag
from backend.domain.quality.windows import PREFIX_DUPLICATE_LIMIT, PREFIX_LINK_LIMIT
from backend.domain.visitor import describe_visitor
from backend.storage.db.engine import Database
from backend.storage.db.models import Click, Conversion, StatsHourly
from backend.storage.rollups.hourly import Counts, RollupKey
from backend.storage.streams.entries import encode_entry
from backend.worker.batch import Prepared
from backend.worker.consumer import StreamConsumer
from backend.worker.main import build_consumer
from backend.worker.steps.write import write_batch
from tests.support import (
    BROWSER,
    BROWSER_HEADERS,
    Programme,
    add_partner_with_link,
    click_at,
    follow_link,
)

T0 = 1_790_000_000_000


def conversion_at(
    programme: Programme, at_ms: int, click_id: str | None, prefix: str = "198.51.100.0/24"
) -> ConversionEvent:
    return ConversionEvent(
        event_id=new_event_id(at_ms),
        at_ms=at_ms,
        merchant_id=programme.merchant["id"],
        order_id=f"O-{at_ms}-{click_id or prefix}"[:128],
        amount_minor=10_000,
        currency="EUR",
        click_id=click_id,
        source=Source.PIXEL,
        event_name="sale",
        items_json=None,
        ip_prefix=prefix,
    )


async def deliver(
    redis: Redis, settings: Settings, consumer: StreamConsumer, events: Sequence[QueuedEvent]
) -> None:
    await redis.xadd(settings.stream, {"e": encode_entry(encode_event(e) for e in events)})
    assert await consumer.drain() == len(events)


async def click_flags(database: Database) -> list[str]:
    async with database.session() as session:
        return list((await session.scalars(select(Click.flags).order_by(Click.at_ms))).all())


async def conversions(database: Database) -> list[tuple[str, int]]:
    """(flags, commission) per conversion, in time order."""
    async with database.session() as session:
        rows = await session.execute(
            select(Conversion.flags, Conversion.commission_minor).order_by(Conversion.at_ms)
        )
    return [(flags, commission) for flags, commission in rows]


async def click_totals(database: Database) -> tuple[int, int, int, int]:
    """(clicks, unique_clicks, bot_clicks, flagged_clicks) from the rollup."""
    columns = ("clicks", "unique_clicks", "bot_clicks", "flagged_clicks")
    async with database.session() as session:
        row = (
            await session.execute(
                select(*(func.coalesce(func.sum(getattr(StatsHourly, c)), 0) for c in columns))
            )
        ).one()
    clicks, unique, bots, flagged = (int(value) for value in row)
    return clicks, unique, bots, flagged


async def test_bot_click_is_redirected_and_stored_but_not_billed_nor_paid_for(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    googlebot = {
        "User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    }
    click_id = await follow_link(client, programme.link["code"], googlebot)
    await client.get(
        "/p.gif",
        params={"m": programme.merchant["key"], "oid": "B-1", "amt": "49.90", "clk": click_id},
    )
    await consumer.drain()

    async with database.session() as session:
        click = await session.get(Click, click_id)
    assert click is not None
    assert (click.is_bot, click.is_unique, click.device_class) == (True, False, "bot")
    assert click.flags == "bot:crawler,bot:no_accept_language"
    assert await conversions(database) == [("too_fast,bot_click,review", 0)]
    assert await click_totals(database) == (0, 0, 1, 0)
    totals = (await client.get("/api/v1/stats", headers=programme.headers)).json()["totals"]
    assert (totals["clicks"], totals["bot_clicks"], totals["conversions"]) == (0, 1, 1)
    assert (totals["revenue_minor"], totals["commission_minor"]) == (4990, 0)


async def test_headless_browser_is_a_bot_even_with_accept_language(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    headless = {**BROWSER_HEADERS, "User-Agent": BROWSER.replace("Chrome/", "HeadlessChrome/")}
    await follow_link(client, programme.link["code"], headless)
    await consumer.drain()

    assert await click_flags(database) == ["bot:headless"]
    assert await click_totals(database) == (0, 0, 1, 0)


async def test_click_less_than_ten_seconds_after_the_same_one_is_a_duplicate(
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    redis: Redis,
    settings: Settings,
) -> None:
    offsets_ms = [0, 9_999, 19_999, 40_000]
    await deliver(redis, settings, consumer, [click_at(programme, T0 + ms) for ms in offsets_ms])

    assert await click_flags(database) == ["", "duplicate", "", ""]
    assert await click_totals(database) == (3, 1, 0, 1)


async def test_more_than_ten_clicks_on_a_link_in_ten_minutes_are_rate_limited(
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    redis: Redis,
    settings: Settings,
) -> None:
    storm = [click_at(programme, T0 + n * 30_000) for n in range(12)]  # a click every 30 s
    # Eleven minutes after the first, only eight of the storm's clicks are within ten minutes.
    later = click_at(programme, T0 + 11 * MINUTE_MS + 1)
    await deliver(redis, settings, consumer, [*storm, later])

    assert await click_flags(database) == [""] * 10 + ["rate_limited:link"] * 2 + [""]
    assert await click_totals(database) == (11, 1, 0, 2)


async def test_more_than_fifty_clicks_on_a_partners_links_in_an_hour_are_rate_limited(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    redis: Redis,
    settings: Settings,
) -> None:
    _, other_partners_link = await add_partner_with_link(client, programme, "Other")
    # One click every 70 s stays under the link's limit; the 51st within the hour is too many.
    events = [click_at(programme, T0 + n * 70_000) for n in range(51)]
    events.append(click_at(programme, T0 + 51 * 70_000, link=other_partners_link))
    await deliver(redis, settings, consumer, events)

    assert await click_flags(database) == [""] * 50 + ["rate_limited:partner", ""]


async def test_one_address_rotating_user_agents_is_flagged_by_its_network_prefix(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    """Every user agent makes a new visitor, unique and billable to the visitor's windows; the
    address's /24 counts them all: more than fifty in ten minutes (and, at this pace, more than
    five in ten seconds) are flagged and not billed."""
    for number in range(60):
        agent = BROWSER.replace("Chrome/120.0.0.0", f"Chrome/120.0.{number}.0")
        headers = {**BROWSER_HEADERS, "User-Agent": agent, "X-Forwarded-For": "198.51.100.77"}
        await follow_link(client, programme.link["code"], headers)
    await consumer.drain()

    async with database.session() as session:
        stored = await session.scalars(select(Click.flags).order_by(Click.click_id))
    flags = [set(flag.split(",")) - {""} for flag in stored]
    assert len(flags) == 60
    assert all(not flag for flag in flags[:PREFIX_DUPLICATE_LIMIT])
    assert all(Flag.PREFIX_RATE_LIMITED_LINK in flag for flag in flags[PREFIX_LINK_LIMIT:])
    assert set().union(*flags) <= {Flag.PREFIX_DUPLICATE, Flag.PREFIX_RATE_LIMITED_LINK}
    billable = flags.count(set())
    assert await click_totals(database) == (billable, billable, 0, 60 - billable)
    assert billable <= PREFIX_LINK_LIMIT


async def test_the_people_behind_one_nat_are_billed_at_a_normal_pace(
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    redis: Redis,
    settings: Settings,
) -> None:
    """Many visitors behind one address (an office, a carrier's NAT): a click every 15 s for an
    hour, all billed."""
    people = [Visitor("198.51.100.0/24", f"{n:032x}", BROWSER, True) for n in range(240)]
    events = [click_at(programme, T0 + n * 15_000, person) for n, person in enumerate(people)]
    await deliver(redis, settings, consumer, events)

    assert await click_totals(database) == (240, 240, 0, 0)


async def test_conversion_within_five_seconds_of_its_click_is_too_fast(
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    redis: Redis,
    settings: Settings,
) -> None:
    quick = click_at(programme, T0)
    human = click_at(programme, T0 + 20_000, Visitor("203.0.113.0/24", "c" * 32, BROWSER, True))
    await deliver(
        redis,
        settings,
        consumer,
        [
            quick,
            human,
            conversion_at(programme, T0 + 4_999, quick.click_id),
            conversion_at(programme, T0 + 25_000, human.click_id),
        ],
    )

    # 10 % of 100.00 plus the flat 0.50, pending review or not
    assert await conversions(database) == [("too_fast,review", 1050), ("", 1050)]


async def test_more_than_five_conversions_from_one_prefix_in_an_hour_are_a_burst(
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    redis: Redis,
    settings: Settings,
) -> None:
    burst = [conversion_at(programme, T0 + n * 5 * MINUTE_MS, None) for n in range(7)]
    elsewhere = conversion_at(programme, T0 + 31 * MINUTE_MS, None, "2001:db8:abcd::/48")
    an_hour_on = conversion_at(programme, T0 + 90 * MINUTE_MS, None)
    await deliver(redis, settings, consumer, [*burst, elsewhere, an_hour_on])

    flags = [flags for flags, _ in await conversions(database)]
    # Unattributed, so nothing to review: there is no commission.
    assert flags == [""] * 5 + ["prefix_burst"] * 2 + ["", ""]


async def test_conversion_crediting_a_flagged_click_is_held_for_review(
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    redis: Redis,
    settings: Settings,
) -> None:
    first, double = click_at(programme, T0), click_at(programme, T0 + 2_000)
    await deliver(redis, settings, consumer, [first, double])
    # One conversion credits a click already stored, the other a click of its own batch.
    later = click_at(programme, T0 + 4_000)
    await deliver(
        redis,
        settings,
        consumer,
        [
            later,
            conversion_at(programme, T0 + 10 * MINUTE_MS, double.click_id),
            conversion_at(programme, T0 + 11 * MINUTE_MS, later.click_id),
            conversion_at(programme, T0 + 12 * MINUTE_MS, first.click_id),
        ],
    )

    assert await click_flags(database) == ["", "duplicate", "duplicate"]
    assert await conversions(database) == [
        ("flagged_click,review", 1050),
        ("flagged_click,review", 1050),
        ("", 1050),
    ]


async def test_conversion_finds_its_click_in_the_batch_before_while_that_is_unwritten(
    programme: Programme, database: Database, redis: Redis, settings: Settings
) -> None:
    """Batches are pipelined: when a conversion's batch looks its click up, the click's batch,
    just before it, may not be committed yet. It is credited all the same, not held for
    review as a click that is missing."""
    click = click_at(programme, T0)
    for event in (click, conversion_at(programme, T0 + 10 * MINUTE_MS, click.click_id)):
        await redis.xadd(settings.stream, {"e": encode_entry([encode_event(event)])})
    one_at_a_time = build_consumer(
        settings.with_overrides(batch_size=1), database, settings.redis_url
    )
    await one_at_a_time.ensure_group()
    try:
        assert await one_at_a_time.drain() == 2
    finally:
        await one_at_a_time.close()

    assert await conversions(database) == [("", 1050)]


async def test_first_click_of_a_new_day_is_unique_again(
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    redis: Redis,
    settings: Settings,
) -> None:
    midnight = (T0 // DAY_MS + 1) * DAY_MS
    address = ipaddress.ip_address("198.51.100.23")
    yesterday, today = (
        describe_visitor(address, BROWSER, True, salt) for salt in (b"1" * 32, b"2" * 32)
    )
    assert yesterday.visitor_hash != today.visitor_hash  # the salt rotated at midnight
    events: list[QueuedEvent] = [
        click_at(programme, midnight - 60_000, yesterday),
        click_at(programme, midnight - 30_000, yesterday),
        click_at(programme, midnight + 5_000, today),
        click_at(programme, midnight + 60_000, today),
    ]
    await deliver(redis, settings, consumer, events)

    async with database.session() as session:
        unique = (await session.scalars(select(Click.is_unique).order_by(Click.at_ms))).all()
    assert unique == [True, False, True, False]
    assert await click_totals(database) == (4, 2, 0, 0)


def _rollup_of(batch: Prepared) -> dict[str, tuple[RollupKey, Counts]]:
    """What each row of ``batch`` adds to ``stats_hourly`` (a delta equals only itself)."""
    return {row_id: (delta.key, delta.counts) for row_id, delta in batch.deltas.items()}


async def test_batch_prepared_again_after_its_commit_gets_the_same_flags_and_counts(
    programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    storm = [click_at(programme, T0 + n * 1_000) for n in range(12)]
    bot_click = click_at(
        programme, T0 + 500, Visitor("192.0.2.0/24", "d" * 32, "curl/8.5.0", False)
    )
    events: list[QueuedEvent] = [
        *storm,
        bot_click,
        conversion_at(programme, T0 + 150_000, storm[-1].click_id),
        conversion_at(programme, T0 + 210_000, bot_click.click_id),
        *(conversion_at(programme, T0 + n * MINUTE_MS, None, "192.0.2.0/24") for n in range(7)),
    ]

    # A worker writes the batch, then dies before XACK; another prepares and writes it again.
    first = await consumer.pipeline.prepare(events)
    await write_batch(database, first)
    written = (await click_flags(database), await conversions(database))
    totals = await click_totals(database)
    second = await consumer.pipeline.prepare(events)
    await write_batch(database, second)

    assert (second.clicks, second.conversions, _rollup_of(second)) == (
        first.clicks,
        first.conversions,
        _rollup_of(first),
    )
    assert (await click_flags(database), await conversions(database)) == written
    assert await click_totals(database) == totals == (1, 1, 1, 11)
    assert written == (
        [
            "",
            "bot:not_browser,bot:no_accept_language",
            *["duplicate"] * 4,
            *["duplicate,duplicate:prefix"] * 5,  # six clicks within ten seconds from its prefix
            *["duplicate,rate_limited:link,duplicate:prefix"] * 2,
        ],
        [
            ("", 0),
            ("", 0),
            ("", 0),
            ("flagged_click,review", 1050),
            ("", 0),
            ("bot_click,review", 0),
            ("", 0),
            ("prefix_burst", 0),
            ("prefix_burst", 0),
        ],
    )
