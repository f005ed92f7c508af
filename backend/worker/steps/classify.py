"""Classify: Redis's verdict on each click and impression (``backend.domain.quality.windows``),
asked once per batch (``questions``), turned into flags, uniqueness and the row's rollup count.

A click check takes the flags the edge found in the user agent and the bits from Redis and
returns the flags it raises, or "". A click with no flag is billable; unique counts among
billable clicks only, so ``unique_clicks`` never exceeds ``clicks``. A new rule is a new check.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from msgspec.structs import astuple

from backend.domain.events import ClickEvent, ImpressionEvent
from backend.domain.quality.flags import Flag
from backend.domain.quality.windows import (
    DUPLICATE,
    PREFIX_DUPLICATE,
    PREFIX_RATE_LIMITED_LINK,
    PREFIX_RATE_LIMITED_PARTNER,
    RATE_LIMITED_LINK,
    RATE_LIMITED_PARTNER,
    UNIQUE,
    Questions,
)
from backend.storage.catalog import LinkInfo
from backend.storage.rollups.hourly import (
    BILLABLE_CLICK,
    BOT_CLICK,
    BOT_IMPRESSION,
    FLAGGED_CLICK,
    HUMAN_IMPRESSION,
    UNIQUE_CLICK,
    SharedDeltas,
    link_delta,
)
from backend.worker.batch import CLICK_COLUMNS, IMPRESSION_COLUMNS, Prepared
from backend.worker.steps.attribute import CreditedClick
from backend.worker.steps.validate import Validated


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


def questions(valid: Validated) -> Questions:
    """What to ask Redis of the batch: its humans' clicks and impressions, and its conversions
    (bots' are neither unique nor billable)."""
    asked = Questions()
    for click, _ in valid.clicks:
        if not click.is_bot:
            asked.click(
                click.click_id,
                click.at_ms,
                click.link_id,
                click.partner_id,
                click.visitor_hash,
                click.ip_prefix,
            )
    for impression, _ in valid.impressions:
        if not impression.is_bot:
            asked.impression(
                impression.event_id, impression.at_ms, impression.link_id, impression.visitor_hash
            )
    for conversion in valid.conversions:
        asked.conversion(
            conversion.event_id, conversion.at_ms, conversion.merchant_id, conversion.ip_prefix
        )
    return asked


_CLICK_VERDICT = CLICK_COLUMNS.index("is_unique")  # it and ``flags``: what the worker adds
_IMPRESSION_VERDICT = IMPRESSION_COLUMNS.index("is_unique")


def add_clicks(
    batch: Prepared,
    clicks: list[tuple[ClickEvent, LinkInfo]],
    human_bits: list[int],
    credited: set[str],
    shared: SharedDeltas,
) -> dict[str, CreditedClick]:
    """Each click's row as the edge stamped it, with Redis's verdict in its last two columns
    (bots were not asked about), and its rollup delta; returns the clicks conversions credit."""
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
        batch.deltas[event.click_id] = link_delta(shared, event.at_ms, link, counted)
        if event.click_id in credited:
            in_batch[event.click_id] = CreditedClick(is_bot, flags)
    return in_batch


def add_impressions(
    batch: Prepared,
    impressions: list[tuple[ImpressionEvent, LinkInfo]],
    human_bits: list[int],
    shared: SharedDeltas,
) -> None:
    """Each impression's row as the edge stamped it, with Redis's verdict, and its delta."""
    answers = iter(human_bits)
    for event, link in impressions:
        is_bot = event.is_bot
        is_unique = False if is_bot else bool(next(answers) & UNIQUE)
        batch.impressions.append(astuple(event)[:_IMPRESSION_VERDICT] + (is_unique,))  # noqa: RUF005
        counted = BOT_IMPRESSION if is_bot else HUMAN_IMPRESSION
        batch.deltas[event.event_id] = link_delta(shared, event.at_ms, link, counted)
