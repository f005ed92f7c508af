"""The hourly rollup's writer: what a stored row adds to ``stats_hourly``, and the one upsert
that adds it. Nothing else writes ``stats_hourly``.

Every stored click counts exactly once, as ``backend.storage.rollups.measures`` says (billable,
unique, bot or flagged). A human's impression counts in ``impressions``, a bot's nowhere. A
conversion counts with its revenue and commission while its status is counted; a click that
converted counts once in ``converted_clicks`` (``backend.domain.affiliate.converted`` works out
those deltas). A row's delta is kept beside it and added only if the insert actually wrote the
row, so a redelivered batch never counts twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

from backend.core.clock import HOUR_MS
from backend.storage.catalog import LinkInfo
from backend.storage.db.models import StatsHourly
from backend.storage.rollups.measures import STATS_COUNTERS, click_counts

STATS: Table = StatsHourly.__table__  # type: ignore[assignment]

# What a row adds to ``stats_hourly``: the counts, in ``STATS_COUNTERS`` order (the measures'),
# added to the row of a ``RollupKey``, (hour_ms, merchant_id, link_id, currency, partner_id,
# campaign_id), the table's key (a link's partner and campaign are its own; a conversion no
# click is credited with sits on link 0 under its coupon's partner and campaign, or 0).
RollupKey = tuple[int, int, int, str, int, int]
Counts = tuple[int, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Delta:
    """What one row adds to ``stats_hourly``. Equal only to itself: a batch's rows that add the
    same counts to the same row share one (``link_delta``), so the writer counts rows per
    delta without hashing fourteen values a row."""

    key: RollupKey
    counts: Counts


SharedDeltas = dict[tuple[int, int, Counts], Delta]  # by link id, hour and counts


def counts(**values: int) -> Counts:
    """Rollup counts by name; the others are 0."""
    if unknown := values.keys() - set(STATS_COUNTERS):
        raise ValueError(f"not rollup counters: {sorted(unknown)}")
    return tuple(values.get(name, 0) for name in STATS_COUNTERS)


# The four kinds of stored click, counted by the measures' own rule (``click_counts``, which the
# readers' SQL mirrors), worked out once here rather than per click.
BILLABLE_CLICK = counts(**click_counts(is_bot=False, is_unique=False, flags=""))
UNIQUE_CLICK = counts(**click_counts(is_bot=False, is_unique=True, flags=""))
BOT_CLICK = counts(**click_counts(is_bot=True, is_unique=False, flags="bot:agent"))
FLAGGED_CLICK = counts(**click_counts(is_bot=False, is_unique=False, flags="duplicate"))
HUMAN_IMPRESSION = counts(impressions=1)
BOT_IMPRESSION = counts()


def link_delta(shared: SharedDeltas, at_ms: int, link: LinkInfo, counted: Counts) -> Delta:
    """The delta of a row of ``link`` at ``at_ms`` that adds ``counted``: one per batch for all
    such rows."""
    hour_ms = at_ms // HOUR_MS * HOUR_MS
    delta = shared.get((link.id, hour_ms, counted))
    if delta is None:
        key = (hour_ms, link.merchant_id, link.id, link.currency, link.partner_id, link.campaign_id)
        delta = shared[link.id, hour_ms, counted] = Delta(key, counted)
    return delta


def conversion_delta(at_ms: int, merchant_id: int, figures: Any, sign: int = 1) -> Delta:
    """What a conversion at ``at_ms`` with ``figures`` (a mapping of its ``link_id``,
    ``partner_id``, ``campaign_id`` (None when unattributed), ``currency``, ``amount_minor`` and
    ``commission_minor``) adds (``sign`` 1) to, or takes (-1) from, ``stats_hourly``."""
    key: RollupKey = (
        at_ms // HOUR_MS * HOUR_MS,
        merchant_id,
        figures["link_id"] or 0,
        figures["currency"],
        figures["partner_id"] or 0,
        figures["campaign_id"] or 0,
    )
    return Delta(
        key,
        counts(
            conversions=sign,
            revenue_minor=sign * figures["amount_minor"],
            commission_minor=sign * figures["commission_minor"],
        ),
    )


def add_deltas(connection: Connection, deltas: Iterable[Delta]) -> None:
    """Add the deltas to ``stats_hourly``, one row per key (rows sharing a delta counted
    together), aggregated first: PostgreSQL refuses an upsert that touches one key twice in a
    statement."""
    totals: dict[RollupKey, list[int]] = {}
    for delta, times in Counter(deltas).items():
        total = totals.setdefault(delta.key, [0] * len(STATS_COUNTERS))
        for index, count in enumerate(delta.counts):
            total[index] += count * times
    if not totals:
        return
    rows = [
        {
            "hour_ms": hour_ms,
            "merchant_id": merchant_id,
            "link_id": link_id,
            "currency": currency,
            "partner_id": partner_id,
            "campaign_id": campaign_id,
            **dict(zip(STATS_COUNTERS, total, strict=True)),
        }
        for (
            hour_ms,
            merchant_id,
            link_id,
            currency,
            partner_id,
            campaign_id,
        ), total in totals.items()
    ]
    connection.execute(_upsert(connection.dialect.name), rows)


@cache
def _upsert(dialect_name: str) -> Any:
    """Built once per dialect: building it took longer than running it."""
    statement = (postgresql if dialect_name == "postgresql" else sqlite).insert(STATS)
    return statement.on_conflict_do_update(
        index_elements=[
            "hour_ms",
            "merchant_id",
            "link_id",
            "currency",
            "partner_id",
            "campaign_id",
        ],
        set_={name: STATS.c[name] + statement.excluded[name] for name in STATS_COUNTERS},
    )
