"""Enrichment: queued events in, table rows and rollup deltas out.

A batch goes through three phases so that every outside question is asked once per batch:
1. resolve each event's link (the catalog's cache) and, for a conversion, its signed click id,
   collecting the questions for Redis (``backend.domain.quality.windows``) and the click ids to
   look up;
2. ask Redis (one script call) and the database (one query for the credited clicks) at once;
3. build each row by running it through its kind's steps (``CLICK_CHECKS``,
   ``CONVERSION_STEPS``): small functions that flag or fill in the row. A new rule is a new step.
``ask`` runs phase 1 and sends phase 2's questions, ``finish`` awaits the answers and runs phase
3, so the worker can build one batch's rows while Redis answers the next batch's questions.
A credited click may sit in a batch staged before but not yet committed: the worker passes
those batches to ``finish``.

A signed postback is the merchant's word on a sale: its amount and currency always stand, and
so does its click id when it names one. One that names none keeps the attribution its order
already has (the pixel's, say, stored or in a batch not yet committed), so phase 2 also asks
which click the orders of such postbacks carry, and phase 3 attributes the postback to it; the
store then puts the postback's figures on the order's row (``backend.worker.store``).

Clicks and impressions, nearly every event, become plain tuples in their table's column order
(``CLICK_COLUMNS``, ``IMPRESSION_COLUMNS``), which the SQLite driver binds as they are; they
arrive as their rows already (the edge stamps them), and only Redis's verdict is added. The few
conversions stay dictionaries that the conversion steps fill in.

What counts where in ``stats_hourly``: every stored click counts exactly once, as
- ``clicks``, billable: a human's click with no flag; ``unique_clicks``: those that were the
  visitor's first on the link that day;
- ``bot_clicks``: a bot's click (a ``bot:`` flag, ``clicks.is_bot``);
- ``flagged_clicks``: a human's click flagged ``duplicate*`` or ``rate_limited:*``. Billing a
  double-click or a click storm would pay for nothing; hiding them would hide the abuse.
A conversion always counts with its revenue. Crediting a bot's click it earns no commission;
an attributed conversion with any flag (its own or its click's, or a paused partner's, link's
or campaign's) is marked ``review`` and stays pending for a person, as is a sale in a currency
other than its merchant's. A row's rollup delta (its ``stats_hourly`` key and counts) is kept
beside it and counted only if the insert actually wrote the row, so a redelivered batch never
counts twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import msgspec
from msgspec.structs import astuple
from redis.asyncio import Redis
from sqlalchemy import Connection, bindparam, select, tuple_

from backend.core.clock import DAY_MS, HOUR_MS
from backend.core.ids import ClickIdSigner
from backend.domain.affiliate.commission import by_rule
from backend.domain.events import (
    MAX_REJECTED_PAYLOAD,
    ClickEvent,
    ConversionEvent,
    ImpressionEvent,
    QueuedEvent,
    RejectedEvent,
    RejectReason,
    Source,
)
from backend.domain.quality.flags import Flag
from backend.domain.quality.windows import (
    DUPLICATE,
    PREFIX_BURST,
    PREFIX_DUPLICATE,
    PREFIX_RATE_LIMITED_LINK,
    PREFIX_RATE_LIMITED_PARTNER,
    RATE_LIMITED_LINK,
    RATE_LIMITED_PARTNER,
    UNIQUE,
    Counter,
    Questions,
)
from backend.storage.catalog import Catalog, LinkInfo
from backend.storage.db.engine import Database
from backend.storage.db.models import Click, Conversion, ConversionStatus, PartnerStatus, RunStatus

CLOCK_SKEW_MS = 60_000
TOO_FAST_MS = 5_000  # from click to conversion: no person finds, fills in and pays that fast
Row = dict[str, Any]
Values = tuple[Any, ...]  # a row's values in its table's column order

# Clicks and impressions arrive as their rows (the edge stamps them); the key is the first column.
# A click's network prefix follows its columns: it travels for the quality script only.
CLICK_COLUMNS: tuple[str, ...] = ClickEvent.__struct_fields__[:-1]
IMPRESSION_COLUMNS: tuple[str, ...] = ImpressionEvent.__struct_fields__

# What a row adds to ``stats_hourly``: the counts, in ``ROLLUP_COUNTERS`` order, added to the row
# of a ``RollupKey``, (hour_ms, merchant_id, link_id, currency, partner_id, campaign_id), which
# the first four key.
ROLLUP_COUNTERS = (
    "clicks",
    "unique_clicks",
    "bot_clicks",
    "flagged_clicks",
    "impressions",
    "conversions",
    "revenue_minor",
    "commission_minor",
)
RollupKey = tuple[int, int, int, str, int, int]
Counts = tuple[int, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Delta:
    """What one row adds to ``stats_hourly``. Equal only to itself: a batch's rows that add the
    same counts to the same row share one (``_shared_delta``), so the writer counts rows per
    delta without hashing fourteen values a row."""

    key: RollupKey
    counts: Counts


SharedDeltas = dict[tuple[int, int, Counts], Delta]  # by link id, hour and counts


def counts(**values: int) -> Counts:
    """Rollup counts by name; the others are 0."""
    if unknown := values.keys() - set(ROLLUP_COUNTERS):
        raise ValueError(f"not rollup counters: {sorted(unknown)}")
    return tuple(values.get(name, 0) for name in ROLLUP_COUNTERS)


BILLABLE_CLICK = counts(clicks=1)
UNIQUE_CLICK = counts(clicks=1, unique_clicks=1)
BOT_CLICK = counts(bot_clicks=1)
FLAGGED_CLICK = counts(flagged_clicks=1)
HUMAN_IMPRESSION = counts(impressions=1)
BOT_IMPRESSION = counts()


@dataclass(slots=True)
class Prepared:
    """One batch, ready to write: rows per table and each row's rollup delta by its id."""

    clicks: list[Values] = field(default_factory=list)  # in CLICK_COLUMNS order
    impressions: list[Values] = field(default_factory=list)  # in IMPRESSION_COLUMNS order
    conversions: list[Row] = field(default_factory=list)
    rejected: list[Row] = field(default_factory=list)
    deltas: dict[str, Delta] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CreditedClick:
    """What a conversion needs to know of the click it credits."""

    is_bot: bool
    flags: str


@dataclass(slots=True)
class ConversionFacts:
    """A conversion's attribution and what phase 2 learnt about it."""

    event: ConversionEvent
    link: LinkInfo | None
    clicked_ms: int
    attribution_flag: str
    bits: int = 0
    click: CreditedClick | None = None
    merchant_currency: str = ""  # "" when the merchant is not found


@dataclass(slots=True)
class _Pending:
    """A batch after phase 1: its events with what they refer to, and the questions for Redis."""

    questions: Questions = field(default_factory=Questions)
    clicks: list[tuple[ClickEvent, LinkInfo]] = field(default_factory=list)
    impressions: list[tuple[ImpressionEvent, LinkInfo]] = field(default_factory=list)
    conversions: list[ConversionFacts] = field(default_factory=list)


OrderKey = tuple[int, str]  # merchant id, order id
Answers = tuple[
    tuple[list[int], list[int], list[int]], dict[str, CreditedClick], dict[OrderKey, str]
]


@dataclass(frozen=True, slots=True)
class Inquiry:
    """A batch after phase 1, with phase 2's questions on their way."""

    batch: Prepared  # holds the rejects found in phase 1
    pending: _Pending
    credited: set[str]  # the click ids attributed conversions credit
    answers: asyncio.Future[Answers]

    def cancel(self) -> None:
        """Drop the batch unfinished (its stream entries stay pending, to be read again).

        The answers may be settled already, or only about to be (its questions answered or
        failed, the gathering future not told yet): their outcome is read once it is there,
        so that nothing is left to log as never retrieved."""
        self.answers.cancel()
        self.answers.add_done_callback(_dropped)


def _dropped(answers: asyncio.Future[Answers]) -> None:
    if not answers.cancelled():
        answers.exception()


def _flag(row: Row, flag: Flag | str) -> None:
    row["flags"] = f"{row['flags']},{flag}" if row["flags"] else str(flag)


# Click checks: (the flags the edge found in the user agent, bits from Redis) -> the flags they
# raise, or "". A click with no flag is billable; see ``_add_clicks`` for uniqueness and the
# rollup.


def agent_flags(agent: str, bits: int) -> str:
    return agent


def flag_duplicate(agent: str, bits: int) -> str:
    return Flag.DUPLICATE if bits & DUPLICATE else ""


def flag_link_rate(agent: str, bits: int) -> str:
    return Flag.RATE_LIMITED_LINK if bits & RATE_LIMITED_LINK else ""


def flag_partner_rate(agent: str, bits: int) -> str:
    return Flag.RATE_LIMITED_PARTNER if bits & RATE_LIMITED_PARTNER else ""


def flag_prefix_duplicate(agent: str, bits: int) -> str:
    return Flag.PREFIX_DUPLICATE if bits & PREFIX_DUPLICATE else ""


def flag_prefix_link_rate(agent: str, bits: int) -> str:
    return Flag.PREFIX_RATE_LIMITED_LINK if bits & PREFIX_RATE_LIMITED_LINK else ""


def flag_prefix_partner_rate(agent: str, bits: int) -> str:
    return Flag.PREFIX_RATE_LIMITED_PARTNER if bits & PREFIX_RATE_LIMITED_PARTNER else ""


ClickCheck = Callable[[str, int], str]
CLICK_CHECKS: tuple[ClickCheck, ...] = (
    agent_flags,
    flag_duplicate,
    flag_link_rate,
    flag_partner_rate,
    flag_prefix_duplicate,
    flag_prefix_link_rate,
    flag_prefix_partner_rate,
)


@cache
def click_flags(agent: str, bits: int) -> str:
    """The flags ``CLICK_CHECKS`` raise. The checks are pure and their inputs take few values,
    so each pair is checked once."""
    return ",".join([flag for check in CLICK_CHECKS if (flag := check(agent, bits))])


# Conversion steps: (row, facts). The row arrives attributed, with no commission yet.


def put_commission(row: Row, facts: ConversionFacts) -> None:
    """The rule's commission; a paused partner, link or campaign earns it, held for a person to
    decide."""
    link = facts.link
    if link is None:
        return
    if link.partner_status == PartnerStatus.BANNED:
        _flag(row, Flag.PARTNER_BANNED)
        return
    if link.partner_status == PartnerStatus.PAUSED:
        _flag(row, Flag.PARTNER_PAUSED)
    if link.status == RunStatus.PAUSED:
        _flag(row, Flag.LINK_PAUSED)
    if link.campaign_status == RunStatus.PAUSED:
        _flag(row, Flag.CAMPAIGN_PAUSED)
    event = facts.event
    if event.currency != link.currency and link.commission_flat_minor:
        _flag(row, Flag.FLAT_COMMISSION_CURRENCY_MISMATCH)
    row["commission_minor"] = by_rule(
        event.amount_minor,
        event.currency,
        link.currency,
        link.commission_bps,
        link.commission_flat_minor,
    )


def flag_foreign_currency(row: Row, facts: ConversionFacts) -> None:
    if facts.merchant_currency and facts.event.currency != facts.merchant_currency:
        _flag(row, Flag.FOREIGN_CURRENCY)


def flag_too_fast(row: Row, facts: ConversionFacts) -> None:
    if facts.link is not None and facts.event.at_ms - facts.clicked_ms < TOO_FAST_MS:
        _flag(row, Flag.TOO_FAST)


def flag_prefix_burst(row: Row, facts: ConversionFacts) -> None:
    if facts.bits & PREFIX_BURST:
        _flag(row, Flag.PREFIX_BURST)


def check_credited_click(row: Row, facts: ConversionFacts) -> None:
    """A bot's click earns nothing; a flagged or unknown one needs a person to look."""
    if facts.link is None:
        return
    if facts.click is None:
        _flag(row, Flag.CLICK_MISSING)
    elif facts.click.is_bot:
        row["commission_minor"] = 0
        _flag(row, Flag.BOT_CLICK)
    elif facts.click.flags:
        _flag(row, Flag.FLAGGED_CLICK)


def hold_for_review(row: Row, facts: ConversionFacts) -> None:
    """Last: any flag on an attributed conversion keeps it from automatic approval, as does a
    sale in another currency on any."""
    flags = row["flags"]
    if flags and (facts.link is not None or Flag.FOREIGN_CURRENCY in flags.split(",")):
        _flag(row, Flag.REVIEW)


ConversionStep = Callable[[Row, ConversionFacts], None]
CONVERSION_STEPS: tuple[ConversionStep, ...] = (
    put_commission,
    flag_foreign_currency,
    flag_too_fast,
    flag_prefix_burst,
    check_credited_click,
    hold_for_review,
)


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


# Built once: building the ``IN`` expression per batch cost more than running the query. Of the
# table's columns: a select of the mapped class's attributes takes the ORM's path on every run.
_CLICKS_TABLE = Click.__table__
_CONVERSIONS_TABLE = Conversion.__table__
_STORED_CLICKS = select(
    _CLICKS_TABLE.c.click_id, _CLICKS_TABLE.c.is_bot, _CLICKS_TABLE.c.flags
).where(_CLICKS_TABLE.c.click_id.in_(bindparam("click_ids", expanding=True)))
_CLICK_IS_BOT, _CLICK_FLAGS = CLICK_COLUMNS.index("is_bot"), CLICK_COLUMNS.index("flags")
_CLICK_VERDICT = CLICK_COLUMNS.index("is_unique")  # it and ``flags``: what the worker adds
_IMPRESSION_VERDICT = IMPRESSION_COLUMNS.index("is_unique")


class Enricher:
    def __init__(
        self, catalog: Catalog, redis: Redis, signer: ClickIdSigner, database: Database
    ) -> None:
        self._catalog = catalog
        self._counter = Counter(redis)
        self._signer = signer
        self._db = database

    async def prepare(
        self, events: list[QueuedEvent], unwritten: Sequence[Prepared] = ()
    ) -> Prepared:
        """All three phases; ``unwritten``: batches that may not be committed yet."""
        return await self.finish(await self.ask(events), unwritten)

    async def ask(self, events: list[QueuedEvent]) -> Inquiry:
        """Phase 1, then send phase 2's questions without waiting for the answers."""
        batch = Prepared()
        pending = await self._resolve(events, batch)
        credited = {
            f.event.click_id for f in pending.conversions if f.link is not None and f.event.click_id
        }
        orders = {_order(f.event) for f in pending.conversions if _names_no_click(f.event)}
        answers = asyncio.gather(
            self._counter.answer(pending.questions),
            self._stored_clicks(credited),
            self._db.run_read(_read_order_clicks, list(orders)) if orders else _no_orders(),
        )
        # The questions leave when their tasks first run: let them now, not once the caller
        # has built the rows of the batch before (Redis would wait all that time).
        await asyncio.sleep(0)
        return Inquiry(batch, pending, credited, answers)

    async def finish(self, inquiry: Inquiry, unwritten: Sequence[Prepared] = ()) -> Prepared:
        """Phase 3 once the answers are in. ``unwritten``: the batches staged before this one
        that may not have been committed when its credited clicks were looked up."""
        answers = await inquiry.answers
        (click_bits, impression_bits, conversion_bits), stored, order_clicks = answers
        batch, pending = inquiry.batch, inquiry.pending
        shared: SharedDeltas = {}
        in_batch = _add_clicks(batch, pending.clicks, click_bits, inquiry.credited, shared)
        _add_impressions(batch, pending.impressions, impression_bits, shared)
        missing = inquiry.credited - stored.keys()
        earlier = _clicks_in(unwritten, missing) if missing else {}
        if any(_names_no_click(f.event) for f in pending.conversions):
            order_clicks = {**_order_clicks_in(unwritten), **order_clicks}
        for index, (facts, bits) in enumerate(
            zip(pending.conversions, conversion_bits, strict=True)
        ):
            if _names_no_click(facts.event):
                before = pending.conversions[:index]
                facts = await self._inherit_click(facts, before, order_clicks, unwritten, in_batch)
            facts.bits = bits
            click_id = facts.event.click_id
            if facts.link is not None and click_id and facts.click is None:
                facts.click = (
                    stored.get(click_id) or earlier.get(click_id) or in_batch.get(click_id)
                )
            _add_conversion(batch, facts)
        return batch

    async def _inherit_click(
        self,
        facts: ConversionFacts,
        before: list[ConversionFacts],
        order_clicks: dict[OrderKey, str],
        unwritten: Sequence[Prepared],
        in_batch: dict[str, CreditedClick],
    ) -> ConversionFacts:
        """A postback that names no click, attributed to the click its order already has:
        one earlier in this batch, in a batch not yet committed, or stored."""
        key = _order(facts.event)
        click_id = next(
            (
                f.event.click_id
                for f in reversed(before)
                if f.event.click_id and _order(f.event) == key
            ),
            None,
        ) or order_clicks.get(key)
        if click_id is None:
            return facts
        inherited = await self._attribute(msgspec.structs.replace(facts.event, click_id=click_id))
        if inherited.link is not None:
            inherited.click = (
                in_batch.get(click_id)
                or _clicks_in(unwritten, {click_id}).get(click_id)
                or (await self._stored_clicks({click_id})).get(click_id)
            )
        return inherited

    async def _resolve(self, events: list[QueuedEvent], batch: Prepared) -> _Pending:
        """Phase 1: links, user agents and attribution; what to ask Redis. Rejects go to
        ``batch`` at once."""
        pending = _Pending()
        links: dict[int, LinkInfo | None] = {}  # the catalog's cache costs more than a dict
        for event in events:
            if isinstance(event, ClickEvent):
                if event.link_id not in links:
                    links[event.link_id] = await self._catalog.link_by_id(event.link_id)
                link = links[event.link_id]
                if link is None:
                    batch.rejected.append(_link_gone(event))
                    continue
                pending.clicks.append((event, link))
                if not event.is_bot:
                    pending.questions.click(
                        event.click_id,
                        event.at_ms,
                        event.link_id,
                        event.partner_id,
                        event.visitor_hash,
                        event.ip_prefix,
                    )
            elif isinstance(event, ImpressionEvent):
                if event.link_id not in links:
                    links[event.link_id] = await self._catalog.link_by_id(event.link_id)
                link = links[event.link_id]
                if link is None:
                    batch.rejected.append(_link_gone(event))
                    continue
                pending.impressions.append((event, link))
                if not event.is_bot:
                    pending.questions.impression(
                        event.event_id, event.at_ms, event.link_id, event.visitor_hash
                    )
            elif isinstance(event, ConversionEvent):
                pending.conversions.append(await self._attribute(event))
                pending.questions.conversion(
                    event.event_id, event.at_ms, event.merchant_id, event.ip_prefix
                )
            else:
                batch.rejected.append(rejected_row(event))
        return pending

    async def _attribute(self, event: ConversionEvent) -> ConversionFacts:
        """Last click within the window, from the signed click id alone; and the merchant's
        currency."""
        facts = await self._credited_link(event)
        merchant = await self._catalog.merchant_by_id(event.merchant_id)
        facts.merchant_currency = merchant.currency if merchant else ""
        return facts

    async def _credited_link(self, event: ConversionEvent) -> ConversionFacts:
        if not event.click_id:
            return ConversionFacts(event, None, 0, "")
        ref = self._signer.verify(event.click_id)
        if ref is None:
            return ConversionFacts(event, None, 0, Flag.INVALID_CLICK_ID)
        link = await self._catalog.link_by_id(ref.link_id)
        if link is None:
            return ConversionFacts(event, None, 0, Flag.CLICK_LINK_DELETED)
        if link.merchant_id != event.merchant_id:
            return ConversionFacts(event, None, 0, Flag.CLICK_OF_OTHER_MERCHANT)
        age_ms = event.at_ms - ref.clicked_ms
        if age_ms < -CLOCK_SKEW_MS or age_ms > link.window_days * DAY_MS:
            return ConversionFacts(event, None, 0, Flag.CLICK_OUTSIDE_WINDOW)
        return ConversionFacts(event, link, ref.clicked_ms, "")

    async def _stored_clicks(self, click_ids: set[str]) -> dict[str, CreditedClick]:
        """The credited clicks already written, in one query (a stored row beats a replay)."""
        if not click_ids:
            return {}
        return await self._db.run_read(_read_stored_clicks, list(click_ids))


def _names_no_click(event: ConversionEvent) -> bool:
    """A signed postback for an order that says nothing of the click."""
    return event.source == Source.POSTBACK and not event.click_id and bool(event.order_id)


def _order(event: ConversionEvent) -> OrderKey:
    return event.merchant_id, event.order_id or ""


async def _no_orders() -> dict[OrderKey, str]:
    return {}


def _read_order_clicks(connection: Connection, orders: list[OrderKey]) -> dict[OrderKey, str]:
    """The click ids stored conversions of these orders carry (those that carry one)."""
    table = _CONVERSIONS_TABLE.c
    rows = connection.execute(
        select(table.merchant_id, table.order_id, table.click_id).where(
            tuple_(table.merchant_id, table.order_id).in_(orders), table.click_id.is_not(None)
        )
    )
    return {(merchant_id, order_id): click_id for merchant_id, order_id, click_id in rows}


def _order_clicks_in(batches: Sequence[Prepared]) -> dict[OrderKey, str]:
    return {
        (row["merchant_id"], row["order_id"]): row["click_id"]
        for batch in batches
        for row in batch.conversions
        if row["order_id"] and row["click_id"]
    }


def _read_stored_clicks(connection: Connection, click_ids: list[str]) -> dict[str, CreditedClick]:
    rows = connection.execute(_STORED_CLICKS, {"click_ids": click_ids})
    return {click_id: CreditedClick(is_bot, flags) for click_id, is_bot, flags in rows}


def _clicks_in(batches: Sequence[Prepared], click_ids: set[str]) -> dict[str, CreditedClick]:
    return {
        row[0]: CreditedClick(row[_CLICK_IS_BOT], row[_CLICK_FLAGS])
        for batch in batches
        for row in batch.clicks
        if row[0] in click_ids
    }


def _link_gone(event: ClickEvent | ImpressionEvent) -> Row:
    return _rejected_from(event, RejectReason.UNKNOWN_LINK, "link deleted")


def _shared_delta(shared: SharedDeltas, at_ms: int, link: LinkInfo, counted: Counts) -> Delta:
    """The delta of a row of ``link`` at ``at_ms`` that adds ``counted``: one per batch for all
    such rows."""
    hour_ms = at_ms // HOUR_MS * HOUR_MS
    delta = shared.get((link.id, hour_ms, counted))
    if delta is None:
        key = (hour_ms, link.merchant_id, link.id, link.currency, link.partner_id, link.campaign_id)
        delta = shared[link.id, hour_ms, counted] = Delta(key, counted)
    return delta


def _add_clicks(
    batch: Prepared,
    clicks: list[tuple[ClickEvent, LinkInfo]],
    human_bits: list[int],
    credited: set[str],
    shared: SharedDeltas,
) -> dict[str, CreditedClick]:
    """Phase 3 for clicks (bots were not asked about): each row as the edge stamped it, with
    Redis's verdict in its last two columns; returns the clicks conversions credit.

    Unique counts among billable clicks only, so ``unique_clicks`` never exceeds ``clicks``.
    """
    answers = iter(human_bits)
    in_batch: dict[str, CreditedClick] = {}
    for event, link in clicks:
        is_bot = event.is_bot
        bits = 0 if is_bot else next(answers)
        flags = click_flags(event.flags, bits)
        is_unique = not flags and bool(bits & UNIQUE)
        # Concatenated, not unpacked: two block copies instead of a copy item by item.
        batch.clicks.append(astuple(event)[:_CLICK_VERDICT] + (is_unique, flags))  # noqa: RUF005
        if is_bot:
            counted = BOT_CLICK
        elif flags:
            counted = FLAGGED_CLICK
        else:
            counted = UNIQUE_CLICK if is_unique else BILLABLE_CLICK
        batch.deltas[event.click_id] = _shared_delta(shared, event.at_ms, link, counted)
        if event.click_id in credited:
            in_batch[event.click_id] = CreditedClick(is_bot, flags)
    return in_batch


def _add_impressions(
    batch: Prepared,
    impressions: list[tuple[ImpressionEvent, LinkInfo]],
    human_bits: list[int],
    shared: SharedDeltas,
) -> None:
    """Phase 3 for impressions: each row as the edge stamped it, with Redis's verdict."""
    answers = iter(human_bits)
    for event, link in impressions:
        is_bot = event.is_bot
        is_unique = False if is_bot else bool(next(answers) & UNIQUE)
        batch.impressions.append(astuple(event)[:_IMPRESSION_VERDICT] + (is_unique,))  # noqa: RUF005
        counted = BOT_IMPRESSION if is_bot else HUMAN_IMPRESSION
        batch.deltas[event.event_id] = _shared_delta(shared, event.at_ms, link, counted)


def _add_conversion(batch: Prepared, facts: ConversionFacts) -> None:
    event, link = facts.event, facts.link
    row: Row = {
        "event_id": event.event_id,
        "at_ms": event.at_ms,
        "merchant_id": event.merchant_id,
        "order_id": event.order_id,
        "click_id": event.click_id,
        "link_id": link.id if link else None,
        "partner_id": link.partner_id if link else None,
        "campaign_id": link.campaign_id if link else None,
        "amount_minor": event.amount_minor,
        "commission_minor": 0,
        "currency": event.currency,
        "status": ConversionStatus.PENDING.value,
        "source": event.source.value,
        "event_name": event.event_name,
        "items_json": event.items_json,
        "flags": str(facts.attribution_flag),
        "verified": event.source == Source.POSTBACK,
    }
    for step in CONVERSION_STEPS:
        step(row, facts)
    batch.conversions.append(row)
    key: RollupKey = (
        event.at_ms // HOUR_MS * HOUR_MS,
        event.merchant_id,
        link.id if link else 0,
        event.currency,
        link.partner_id if link else 0,
        link.campaign_id if link else 0,
    )
    batch.deltas[event.event_id] = Delta(
        key,
        counts(
            conversions=1,
            revenue_minor=event.amount_minor,
            commission_minor=row["commission_minor"],
        ),
    )
