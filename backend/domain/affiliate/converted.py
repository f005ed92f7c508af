"""Converted clicks in ``stats_hourly``: the conversion rate's numerator, kept as conversions
are written and change, so the overview sums it instead of counting the conversions of every
click in its range.

A click counts once as converted, in the hour it was made, while it has a counted conversion
that is not a bot's or a flagged click's (``eligible``): such clicks are not billable. It counts
under the ids and currency of the first such conversion (the lowest id), its "holder"; a writer
that changes a conversion's status or figures reads the holders of the clicks concerned before
and after the change and adds what moved (``moves``), in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, and_, select

from backend.core.clock import HOUR_MS
from backend.core.ids import clicked_ms
from backend.domain.quality.flags import Flag
from backend.storage.db.models import Conversion
from backend.storage.rollups.hourly import Delta, counts
from backend.storage.rollups.measures import COUNTED, counted

CONVERSIONS: Table = Conversion.__table__  # type: ignore[assignment]
NOT_BILLABLE = (Flag.BOT_CLICK.value, Flag.FLAGGED_CLICK.value)
Holder = Mapping[str, Any]  # the holding conversion's id, event_id, click_id and rollup key


def eligible(conversions: Any) -> ColumnElement[bool]:
    """Whether a conversion row makes its click count as converted (SQL)."""
    return and_(counted(conversions), *(~conversions.flags.contains(f) for f in NOT_BILLABLE))


def converts(row: Mapping[str, Any]) -> bool:
    """``eligible`` of a conversion row in Python, with its click."""
    flags = row["flags"].split(",")
    return bool(row["click_id"]) and row["status"] in COUNTED and not set(NOT_BILLABLE) & {*flags}


def holders(connection: Connection, click_ids: Iterable[str | None]) -> dict[str, Holder]:
    """The holder of each of these clicks that has one."""
    wanted = sorted({click_id for click_id in click_ids if click_id})
    if not wanted:
        return {}
    v = CONVERSIONS.c
    rows = connection.execute(
        select(
            v.id,
            v.event_id,
            v.click_id,
            v.merchant_id,
            v.link_id,
            v.currency,
            v.partner_id,
            v.campaign_id,
        )
        .where(v.click_id.in_(wanted), eligible(v))
        .order_by(v.click_id, v.id)
    ).mappings()
    found: dict[str, Holder] = {}
    for row in rows:
        found.setdefault(row["click_id"], dict(row))
    return found


def converted_delta(conversion: Mapping[str, Any], sign: int) -> Delta | None:
    """What ``conversion`` holding its click adds (``sign`` 1) or takes (-1): one converted
    click in the click's hour, under the conversion's ids and currency; None for a click id
    that is not one (no hour to count it in)."""
    clicked = clicked_ms(conversion["click_id"])
    if clicked is None:
        return None
    key = (
        clicked // HOUR_MS * HOUR_MS,
        conversion["merchant_id"],
        conversion["link_id"] or 0,
        conversion["currency"],
        conversion["partner_id"] or 0,
        conversion["campaign_id"] or 0,
    )
    return Delta(key, counts(converted_clicks=sign))


def moves(before: Mapping[str, Holder], after: Mapping[str, Holder]) -> list[Delta]:
    """What a change of holders from ``before`` to ``after`` adds to ``stats_hourly``."""
    deltas: list[Delta | None] = []
    for click_id in before.keys() | after.keys():
        old, new = before.get(click_id), after.get(click_id)
        if old != new:
            deltas.append(converted_delta(old, -1) if old else None)
            deltas.append(converted_delta(new, 1) if new else None)
    return [delta for delta in deltas if delta is not None]


def written(
    connection: Connection, rows: Iterable[Mapping[str, Any]], new: set[str]
) -> list[Delta]:
    """What the conversions just written (``new``: their event ids; ``rows``: the batch's)
    add: a click whose holder is one of them had none before (any older one would hold it)."""
    after = holders(connection, (row["click_id"] for row in rows if row["event_id"] in new))
    before = {click: holder for click, holder in after.items() if holder["event_id"] not in new}
    return moves(before, after)
