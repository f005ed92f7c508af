"""Price: a conversion's row, its commission and the flags that hold it for a person.

Each step takes the row (attributed, no commission yet) and the conversion's facts, and
flags or fills in the row. Crediting a bot's click a conversion earns no commission; an
attributed conversion (to a click or a coupon) with any flag but a note (its own or its
click's, or a paused partner's, link's or campaign's) is marked ``review`` and stays pending
for a person, as is a sale in a currency other than its merchant's. A new rule is a new step.
"""

from __future__ import annotations

from collections.abc import Callable

from backend.domain.affiliate.commission import by_rule
from backend.domain.events import Source
from backend.domain.quality.flags import NOTES, Flag
from backend.domain.quality.windows import PREFIX_BURST
from backend.storage.db.models import CommissionRule, ConversionStatus, PartnerStatus, RunStatus
from backend.storage.rollups.hourly import conversion_delta
from backend.worker.batch import Prepared, Row
from backend.worker.steps.attribute import ConversionFacts

TOO_FAST_MS = 5_000  # from click to conversion: no person finds, fills in and pays that fast


def _flag(row: Row, flag: Flag | str) -> None:
    row["flags"] = f"{row['flags']},{flag}" if row["flags"] else str(flag)


def put_commission(row: Row, facts: ConversionFacts) -> None:
    """The rule's commission; a paused partner, link or campaign earns it, held for a person to
    decide."""
    credited = facts.credited  # the link, or the coupon when no click is credited
    if credited is None:
        return
    if credited.partner_status == PartnerStatus.BANNED:
        _flag(row, Flag.PARTNER_BANNED)
        return
    if credited.partner_status == PartnerStatus.PAUSED:
        _flag(row, Flag.PARTNER_PAUSED)
    if facts.link is not None and facts.link.status == RunStatus.PAUSED:
        _flag(row, Flag.LINK_PAUSED)
    if credited.campaign_status == RunStatus.PAUSED:
        _flag(row, Flag.CAMPAIGN_PAUSED)
    event = facts.event
    if event.currency != credited.currency and credited.commission_flat_minor:
        _flag(row, Flag.FLAT_COMMISSION_CURRENCY_MISMATCH)
    row["commission_minor"] = by_rule(
        event.amount_minor,
        event.currency,
        credited.currency,
        credited.commission_bps,
        credited.commission_flat_minor,
    )
    row["commission_rule"] = credited.commission_rule


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


def put_network_figures(row: Row, facts: ConversionFacts) -> None:
    """A conversion source's postback: which source, and the commission the network reports,
    stored as reported instead of the rule's (the network pays it)."""
    network = facts.network
    if network is None:
        return
    row["source_id"] = network.source_id
    if network.commission_minor >= 0:
        row["commission_minor"] = network.commission_minor
        row["commission_reported"] = True
        row["commission_rule"] = CommissionRule.NETWORK.value


def mark_renewal(row: Row, facts: ConversionFacts) -> None:
    """A renewal shows the rule that priced it."""
    if facts.renewal is not None:
        row["renewal_rule"] = facts.renewal.rule


def note_opt_out(row: Row, facts: ConversionFacts) -> None:
    """A sale no one is credited with whose buyer asked not to be tracked: noted, so the shop's
    own sales show how many came from such visitors (no identifier is kept for it)."""
    if facts.event.opted_out and facts.credited is None:
        _flag(row, Flag.OPTED_OUT)


def hold_for_review(row: Row, facts: ConversionFacts) -> None:
    """Last: any flag on an attributed conversion keeps it from automatic approval, as does a
    sale in another currency on any; notes (an unknown coupon) do not."""
    flags = [flag for flag in row["flags"].split(",") if flag and flag not in NOTES]
    if flags and (facts.credited is not None or Flag.FOREIGN_CURRENCY in flags):
        _flag(row, Flag.REVIEW)


ConversionStep = Callable[[Row, ConversionFacts], None]
CONVERSION_STEPS: tuple[ConversionStep, ...] = (
    put_commission,
    flag_foreign_currency,
    flag_too_fast,
    flag_prefix_burst,
    check_credited_click,
    put_network_figures,
    mark_renewal,
    note_opt_out,
    hold_for_review,
)


def add_conversion(batch: Prepared, facts: ConversionFacts) -> None:
    """The conversion's row through ``CONVERSION_STEPS``, and its rollup delta."""
    event, link, credited = facts.event, facts.link, facts.credited
    row: Row = {
        "event_id": event.event_id,
        "at_ms": event.at_ms,
        "merchant_id": event.merchant_id,
        "order_id": event.order_id,
        "click_id": event.click_id,
        "link_id": link.id if link else None,
        "partner_id": credited.partner_id if credited else None,
        "campaign_id": credited.campaign_id if credited else None,
        "amount_minor": event.amount_minor,
        "commission_minor": 0,
        "currency": event.currency,
        "status": ConversionStatus.PENDING.value,
        "source": event.source.value,
        "event_name": event.event_name,
        "items_json": event.items_json,
        "flags": str(facts.attribution_flag),
        "verified": event.source in (Source.POSTBACK, Source.NETWORK),  # vouched for
        "coupon": event.coupon or None,
        "attribution": facts.attribution,
        "source_id": None,
        "commission_reported": False,
        "customer_hash": event.customer or None,
        "renewal_rule": "",
        "commission_rule": "",
    }
    for step in CONVERSION_STEPS:
        step(row, facts)
    batch.conversions.append(row)
    if facts.network is not None and facts.network.status:
        batch.network_statuses[event.event_id] = facts.network.status
    if facts.network is not None and facts.network.store_event:
        batch.store_events[event.event_id] = facts.network
    batch.deltas[event.event_id] = conversion_delta(event.at_ms, event.merchant_id, row)
