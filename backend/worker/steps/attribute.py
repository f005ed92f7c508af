"""Attribute: the click a conversion credits, last click within the window, from its signed
click id alone (``attribute``), and once the batch's questions are answered, what is known of
that click (``credit``).

A coupon code credits its partner when the conversion names no valid click, or when it names
another partner's click and the merchant lets coupons win (``Merchant.coupon_over_click``; by
default the click wins). The reason is kept on the row: ``click``, ``cookie`` (the click id
came from the ``ct_click`` cookie) or ``coupon``. A code that is no coupon of the merchant's
is flagged ``unknown_coupon`` and changes nothing else.

A conversion that credits neither a click nor a coupon but names a customer (its reference's
keyed hash) bound to a partner is a renewal: credited to that partner by the campaign's renewal
rule while it pays (``backend.domain.stores.customers``), with the reason ``customer``.

A signed postback is the merchant's word on a sale: its amount and currency always stand, and
so does its click id when it names one. One that names none keeps the attribution its order
already has (the pixel's, say, stored or in a batch not yet committed): the batch also asks
which click the orders of such postbacks carry, and ``credit`` attributes the postback to it;
the writer then puts the postback's figures on the order's row (``steps.write``).
A credited click may sit in a batch staged before but not yet committed: the worker passes
those batches (``unwritten``) along.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from sqlalchemy import Connection, bindparam, select, tuple_

from backend.core.clock import DAY_MS, MINUTE_MS
from backend.core.ids import ClickIdSigner
from backend.domain.events import ConversionEvent, NetworkEvent, Source
from backend.domain.quality.flags import Flag
from backend.domain.stores.customers import RenewalCredit, bound_customers, renewal_credit
from backend.storage.catalog import Catalog, CouponInfo, LinkInfo, MerchantInfo
from backend.storage.db.engine import Database
from backend.storage.db.models import Attribution as Reason
from backend.storage.db.models import Click, Conversion
from backend.worker.batch import CLICK_COLUMNS, Prepared

CLOCK_SKEW_MS = MINUTE_MS
OrderKey = tuple[int, str]  # merchant id, order id


@dataclass(frozen=True, slots=True)
class CreditedClick:
    """What a conversion needs to know of the click it credits."""

    is_bot: bool
    flags: str


@dataclass(slots=True)
class ConversionFacts:
    """A conversion's attribution and what the batch's questions learnt about it."""

    event: ConversionEvent
    link: LinkInfo | None
    clicked_ms: int
    attribution_flag: str
    bits: int = 0
    click: CreditedClick | None = None
    merchant_currency: str = ""  # "" when the merchant is not found
    coupon: CouponInfo | None = None  # the coupon credited, when no click is (``link`` None)
    attribution: str = ""  # a ``models.Attribution``; "" when nothing is credited
    renewal: RenewalCredit | None = None  # the bound partner, when neither is credited

    @property
    def credited(self) -> LinkInfo | CouponInfo | RenewalCredit | None:
        """Whose partner and rule the conversion earns by: the link's, the coupon's or the
        customer's bound partner's."""
        return self.link or self.coupon or self.renewal

    network: NetworkEvent | None = None  # what a conversion source reported besides the sale


# Built once: building the ``IN`` expression per batch cost more than running the query. Of the
# table's columns: a select of the mapped class's attributes takes the ORM's path on every run.
_CLICKS_TABLE = Click.__table__
_CONVERSIONS_TABLE = Conversion.__table__
_STORED_CLICKS = select(
    _CLICKS_TABLE.c.click_id, _CLICKS_TABLE.c.is_bot, _CLICKS_TABLE.c.flags
).where(_CLICKS_TABLE.c.click_id.in_(bindparam("click_ids", expanding=True)))
_CLICK_IS_BOT, _CLICK_FLAGS = CLICK_COLUMNS.index("is_bot"), CLICK_COLUMNS.index("flags")


class Attribution:
    """Attributing conversions, with what it asks: the catalog, the signer, the database."""

    def __init__(self, catalog: Catalog, signer: ClickIdSigner, database: Database) -> None:
        self._catalog = catalog
        self._signer = signer
        self._db = database

    async def attribute(self, event: ConversionEvent) -> ConversionFacts:
        """Last click within the window, from the signed click id alone; and the merchant's
        currency."""
        facts = await self._credited_link(event)
        merchant = await self._catalog.merchant_by_id(event.merchant_id)
        facts.merchant_currency = merchant.currency if merchant else ""
        if facts.link is not None:
            facts.attribution = Reason.COOKIE if event.click_from_cookie else Reason.CLICK
        if event.coupon:
            await self._apply_coupon(facts, merchant)
        return facts

    async def credit_renewals(self, attributed: list[ConversionFacts]) -> None:
        """The conversions that credit no click or coupon but name a customer bound to a
        partner: credited to that partner by the renewal rule, asked in one query per batch."""
        wanted = [f for f in attributed if f.event.customer and f.credited is None]
        if not wanted:
            return
        keys = list({(f.event.merchant_id, f.event.customer) for f in wanted})
        bound = await self._db.run_read(bound_customers, keys)
        for facts in wanted:
            binding = bound.get((facts.event.merchant_id, facts.event.customer))
            facts.renewal = renewal_credit(binding, facts.event.at_ms) if binding else None
            if facts.renewal is not None:
                facts.attribution = Reason.CUSTOMER

    async def _apply_coupon(self, facts: ConversionFacts, merchant: MerchantInfo | None) -> None:
        """The coupon's partner is credited instead of the click's, or where no click is."""
        coupon = await self._catalog.coupon(facts.event.merchant_id, facts.event.coupon)
        if coupon is None:
            flags = facts.attribution_flag
            facts.attribution_flag = (
                f"{flags},{Flag.UNKNOWN_COUPON}" if flags else Flag.UNKNOWN_COUPON
            )
            return
        link = facts.link
        if link is not None and (
            link.partner_id == coupon.partner_id or not (merchant and merchant.coupon_over_click)
        ):
            return  # the click stands
        facts.link, facts.clicked_ms = None, 0
        facts.coupon, facts.attribution = coupon, Reason.COUPON

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

    async def stored_clicks(self, click_ids: set[str]) -> dict[str, CreditedClick]:
        """The credited clicks already written, in one query (a stored row beats a replay)."""
        if not click_ids:
            return {}
        return await self._db.run_read(_read_stored_clicks, list(click_ids))

    async def order_clicks(self, orders: set[OrderKey]) -> dict[OrderKey, str]:
        """The click ids stored conversions of these orders carry (those that carry one)."""
        if not orders:
            return {}
        return await self._db.run_read(_read_order_clicks, list(orders))

    async def credit(
        self,
        attributed: list[ConversionFacts],
        stored: dict[str, CreditedClick],
        order_clicks: dict[OrderKey, str],
        in_batch: dict[str, CreditedClick],
        unwritten: Sequence[Prepared],
    ) -> list[ConversionFacts]:
        """Each conversion with the click it credits: inherited by a postback that names none,
        then found stored, in a batch not yet committed, or in this batch (``in_batch``)."""
        missing = credited_click_ids(attributed) - stored.keys()
        earlier = _clicks_in(unwritten, missing) if missing else {}
        if any(names_no_click(f.event) for f in attributed):
            order_clicks = {**_order_clicks_in(unwritten), **order_clicks}
        credited: list[ConversionFacts] = []
        for index, facts in enumerate(attributed):
            if names_no_click(facts.event):
                before = attributed[:index]
                facts = await self._inherit_click(facts, before, order_clicks, unwritten, in_batch)
            click_id = facts.event.click_id
            if facts.link is not None and click_id and facts.click is None:
                facts.click = (
                    stored.get(click_id) or earlier.get(click_id) or in_batch.get(click_id)
                )
            credited.append(facts)
        return credited

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
        key = order_of(facts.event)
        click_id = next(
            (
                f.event.click_id
                for f in reversed(before)
                if f.event.click_id and order_of(f.event) == key
            ),
            None,
        ) or order_clicks.get(key)
        if click_id is None:
            return facts
        inherited = await self.attribute(msgspec.structs.replace(facts.event, click_id=click_id))
        inherited.bits = facts.bits
        if inherited.link is not None:
            inherited.click = (
                in_batch.get(click_id)
                or _clicks_in(unwritten, {click_id}).get(click_id)
                or (await self.stored_clicks({click_id})).get(click_id)
            )
        return inherited


def credited_click_ids(attributed: list[ConversionFacts]) -> set[str]:
    """The click ids attributed conversions credit."""
    return {f.event.click_id for f in attributed if f.link is not None and f.event.click_id}


def names_no_click(event: ConversionEvent) -> bool:
    """A signed postback (or a network's) for an order that says nothing of the click."""
    return (
        event.source in (Source.POSTBACK, Source.NETWORK)
        and not event.click_id
        and bool(event.order_id)
    )


def order_of(event: ConversionEvent) -> OrderKey:
    return event.merchant_id, event.order_id or ""


def _read_order_clicks(connection: Connection, orders: list[OrderKey]) -> dict[OrderKey, str]:
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
