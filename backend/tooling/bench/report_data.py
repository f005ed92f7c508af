"""Report data at scale: clicks and conversions spread over a time span, written through the
worker's own bulk write (``steps.write.write_batch``, rollups included) in batches, or on
PostgreSQL by COPY with the hourly rollup's deltas added through its own upsert.

Rows are built here rather than through the stream and the pipeline: the goal is ten million
rows in minutes (a hundred million by COPY) with realistic spreads of partners, referrers,
devices and sub-ids, not a second measure of the worker. Rows and deltas have the shapes the
pipeline produces. Each UTC day is generated on its own (its own seed), so memory stays that
of one day's clicks whatever the total.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain

from sqlalchemy import select

from backend.core.clock import DAY_MS, HOUR_MS, now_ms
from backend.core.ids import ClickIdSigner, new_event_id
from backend.domain.affiliate.converted import converted_delta, converts
from backend.domain.quality.flags import Flag
from backend.storage.db.engine import Database
from backend.storage.db.models import Campaign, ConversionStatus, Link, Merchant
from backend.storage.db.partitions import ensure_partitions
from backend.storage.rollups.hourly import Delta, add_deltas, counts
from backend.storage.rollups.measures import COUNTED, click_counts
from backend.worker.batch import CLICK_COLUMNS, Prepared, Row
from backend.worker.steps.write import write_batch

BATCH = 5_000
REFERRERS = (*(f"news{n}.example" for n in range(40)), "google.com", "t.co", "")
LANDINGS = tuple(f"https://shop.example/p/{n}" for n in range(60))
DEVICES = ("desktop", "mobile", "tablet")
BROWSERS = ("Chrome", "Safari", "Firefox", "Edge", "Samsung Internet")
SUB1 = (*(f"post-{n}" for n in range(30)), "")
SUB2 = ("header", "sidebar", "footer", "")
UTM_SOURCES = ("newsletter", "twitter", "facebook", "google", "")
UTM_MEDIUMS = ("email", "social", "cpc", "")
UTM_CAMPAIGNS = ("spring-sale", "black-friday", "")
SYSTEMS = ("Windows", "Mac OS X", "iOS", "Android", "Linux")
COUNTRIES = ("DE", "FR", "GB", "US", "NL", "")
STATUSES = (
    (ConversionStatus.PENDING, 0.8),
    (ConversionStatus.APPROVED, 0.15),
    (ConversionStatus.REJECTED, 0.05),
)


@dataclass(frozen=True, slots=True)
class TargetLink:
    id: int
    partner_id: int
    campaign_id: int
    merchant_id: int
    currency: str


async def target_links(database: Database) -> list[TargetLink]:
    async with database.session() as session:
        rows = await session.execute(
            select(Link.id, Link.partner_id, Link.campaign_id, Merchant.id, Merchant.currency)
            .join(Campaign, Campaign.id == Link.campaign_id)
            .join(Merchant, Merchant.id == Campaign.merchant_id)
            .order_by(Link.id)
        )
        return [TargetLink(*row) for row in rows.all()]


def _click(rng: random.Random, signer: ClickIdSigner, link: TargetLink, at_ms: int) -> Row:
    roll = rng.random()
    is_bot = roll < 0.03
    flags = "bot:crawler" if is_bot else ("duplicate" if roll < 0.06 else "")
    return {
        "click_id": signer.issue(link.id, at_ms),
        "at_ms": at_ms,
        "link_id": link.id,
        "partner_id": link.partner_id,
        "campaign_id": link.campaign_id,
        "merchant_id": link.merchant_id,
        "visitor_hash": f"{rng.getrandbits(64):016x}",
        "device_class": rng.choice(DEVICES),
        "browser": rng.choice(BROWSERS),
        "os": rng.choice(SYSTEMS),
        "country": rng.choice(COUNTRIES),
        "referrer_host": (host := rng.choice(REFERRERS)),
        "referrer_url": f"https://{host}/" if host else "",
        "landing_url": rng.choice(LANDINGS),
        "sub1": rng.choice(SUB1),
        "sub2": rng.choice(SUB2),
        "sub3": "",
        "sub4": "",
        "sub5": "",
        "utm_source": rng.choice(UTM_SOURCES),
        "utm_medium": rng.choice(UTM_MEDIUMS),
        "utm_campaign": rng.choice(UTM_CAMPAIGNS),
        "utm_term": "",
        "utm_content": "",
        "is_bot": is_bot,
        "is_unique": not flags and rng.random() < 0.7,
        "flags": flags,
    }


def _click_delta(row: Row, link: TargetLink) -> Delta:
    hour_ms = row["at_ms"] // HOUR_MS * HOUR_MS
    key = (hour_ms, link.merchant_id, link.id, link.currency, link.partner_id, link.campaign_id)
    return Delta(
        key,
        counts(**click_counts(row["is_bot"], row["is_unique"], row["flags"])),
    )


def _credited_click_flags(click: Row) -> str:
    """What the worker notes on a sale crediting ``click``: a bot's or a flagged click."""
    if click["is_bot"]:
        return Flag.BOT_CLICK.value
    return Flag.FLAGGED_CLICK.value if click["flags"] else ""


def _conversion(
    rng: random.Random, click: Row | None, link: TargetLink, at_ms: int, number: int
) -> tuple[Row, Delta]:
    amount = rng.randrange(1_000, 20_000)
    status = rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES])[0]
    attributed = click is not None
    row: Row = {
        "event_id": new_event_id(at_ms),
        "at_ms": at_ms,
        "merchant_id": link.merchant_id,
        "order_id": f"bench-{number}",
        "click_id": click["click_id"] if click else None,
        "link_id": link.id if attributed else None,
        "partner_id": link.partner_id if attributed else None,
        "campaign_id": link.campaign_id if attributed else None,
        "amount_minor": amount,
        "commission_minor": amount // 10 if attributed else 0,
        "currency": link.currency,
        "status": status.value,
        "source": "pixel",
        "event_name": "purchase",
        "items_json": None,
        "flags": _credited_click_flags(click) if click else "unattributed",
        "verified": False,
        "customer_hash": None,
        "renewal_rule": "",
    }
    counted = status in COUNTED  # a status change after writing is an uncount: mirror it
    key = (
        at_ms // HOUR_MS * HOUR_MS,
        link.merchant_id,
        link.id if attributed else 0,
        link.currency,
        link.partner_id if attributed else 0,
        link.campaign_id if attributed else 0,
    )
    delta = Delta(
        key,
        counts(
            conversions=int(counted),
            revenue_minor=amount if counted else 0,
            commission_minor=row["commission_minor"] if counted else 0,
        ),
    )
    return row, delta


def _batches(
    links: list[TargetLink],
    clicks: int,
    conversions: int,
    start_ms: int,
    end_ms: int,
    seed: int,
    first_number: int = 0,
) -> Iterator[Prepared]:
    """``first_number``: the number of the range's first click (order ids stay unique)."""
    rng = random.Random(seed)
    signer = ClickIdSigner("report-bench")
    weights = [1 / (rank + 1) for rank in range(len(links))]  # a few links get most traffic
    times = sorted(rng.randrange(start_ms, end_ms) for _ in range(clicks))
    converting = set(rng.sample(range(clicks), min(conversions, clicks)))
    batch = Prepared()
    pending: list[tuple[Row, Delta]] = []
    for number, at_ms in enumerate(times):
        link = rng.choices(links, weights)[0]
        row = _click(rng, signer, link, at_ms)
        batch.clicks.append(tuple(row[column] for column in CLICK_COLUMNS))
        batch.deltas[row["click_id"]] = _click_delta(row, link)
        if number in converting:
            credited = row if rng.random() < 0.9 else None
            converted_at = min(at_ms + rng.randrange(HOUR_MS), end_ms - 1)
            pending.append(_conversion(rng, credited, link, converted_at, first_number + number))
        if len(batch.clicks) >= BATCH:
            yield batch
            batch = Prepared()
    for conversion, delta in pending:
        batch.conversions.append(conversion)
        batch.deltas[conversion["event_id"]] = delta
        if len(batch.conversions) >= BATCH:
            yield batch
            batch = Prepared()
    yield batch


def _days(
    links: list[TargetLink], clicks: int, conversions: int, start_ms: int, end_ms: int, seed: int
) -> Iterator[Prepared]:
    """``_batches`` one UTC day (or the part of it in range) at a time, each day's share of
    the clicks and conversions in proportion to its length."""
    span = end_ms - start_ms
    done_clicks = done_conversions = 0
    day_start = start_ms
    while day_start < end_ms:
        day_end = min(end_ms, (day_start // DAY_MS + 1) * DAY_MS)
        upto_clicks = clicks * (day_end - start_ms) // span
        upto_conversions = conversions * (day_end - start_ms) // span
        yield from _batches(
            links,
            upto_clicks - done_clicks,
            upto_conversions - done_conversions,
            day_start,
            day_end,
            seed * 100_003 + day_start // DAY_MS,
            done_clicks,
        )
        done_clicks, done_conversions, day_start = upto_clicks, upto_conversions, day_end


async def generate(
    database: Database,
    clicks: int,
    conversions: int,
    start_ms: int,
    end_ms: int,
    seed: int = 1,
    links: list[TargetLink] | None = None,
) -> None:
    """Write ``clicks`` clicks and ``conversions`` conversions at times in ``[start, end)``,
    on ``links`` (default: every link in the database)."""
    links = links or await target_links(database)
    for batch in _days(links, clicks, conversions, start_ms, end_ms, seed):
        await write_batch(database, batch)


async def copy_generate(
    database: Database, clicks: int, conversions: int, start_ms: int, end_ms: int, seed: int = 1
) -> None:
    """PostgreSQL: ``generate``'s rows by COPY, each batch's rollup deltas added in its
    transaction; the months of the range get their partitions first (as the daily job would
    have made them), so no row lands in the DEFAULT partition."""
    links = await target_links(database)
    async with database.writing() as connection:
        await connection.run_sync(ensure_partitions, now_ms(), start_ms)
    for batch in _days(links, clicks, conversions, start_ms, end_ms, seed):
        async with database.writing() as connection:
            # What the worker adds as it writes, the converted clicks included (each generated
            # click converts at most once: each counted sale of a billable click holds it).
            converted = (converted_delta(row, 1) for row in batch.conversions if converts(row))
            deltas = chain(batch.deltas.values(), (delta for delta in converted if delta))
            await connection.run_sync(add_deltas, deltas)  # opens the transaction
            driver = (await connection.get_raw_connection()).driver_connection
            if driver is None:
                raise RuntimeError("the connection was closed under the COPY")
            if batch.clicks:
                await driver.copy_records_to_table(
                    "clicks", records=batch.clicks, columns=CLICK_COLUMNS
                )
            if batch.conversions:
                columns = list(batch.conversions[0])
                await driver.copy_records_to_table(
                    "conversions",
                    records=[tuple(row[column] for column in columns) for row in batch.conversions],
                    columns=columns,
                )
