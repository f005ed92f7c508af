"""Totals and breakdowns from ``stats_hourly``, within a viewer's scope.

Traffic counts add up across currencies; money never does: each currency is reported apart,
and the single ``revenue_minor`` figure is given only when one currency is involved.
Conversions are also split into verified (a signed postback or a person confirmed them) and
unverified (a pixel or the snippet, which anyone can fire); the rollup has no such dimension,
so that split is counted from the conversions themselves (which are never purged).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import DAY_MS
from backend.core.scope import Viewer
from backend.storage.db.models import Conversion, ConversionStatus, StatsHourly
from backend.storage.rollups.sql import exact_sum

GroupBy = Literal["day", "partner", "campaign", "link"]
_TRAFFIC = ("clicks", "unique_clicks", "bot_clicks", "flagged_clicks", "impressions")
_MONEY = ("conversions", "revenue_minor", "commission_minor")
_VERIFICATION = (
    "verified_conversions",
    "verified_revenue_minor",
    "unverified_conversions",
    "unverified_revenue_minor",
)
_COUNTED = (ConversionStatus.PENDING, ConversionStatus.APPROVED)  # as in the rollup


class CurrencyTotals(msgspec.Struct):
    currency: str
    conversions: int = 0
    revenue_minor: int = 0
    commission_minor: int = 0
    verified_conversions: int = 0
    verified_revenue_minor: int = 0
    unverified_conversions: int = 0
    unverified_revenue_minor: int = 0


class Totals(msgspec.Struct):
    clicks: int = 0
    unique_clicks: int = 0
    bot_clicks: int = 0
    flagged_clicks: int = 0
    impressions: int = 0
    conversions: int = 0
    verified_conversions: int = 0
    unverified_conversions: int = 0
    revenue_minor: int | None = None
    commission_minor: int | None = None
    verified_revenue_minor: int | None = None
    unverified_revenue_minor: int | None = None
    currency: str | None = None
    by_currency: list[CurrencyTotals] = msgspec.field(default_factory=list)


class StatsRow(msgspec.Struct):
    key: str | int
    totals: Totals


class StatsReport(msgspec.Struct):
    start: datetime
    end: datetime
    group_by: str | None
    totals: Totals
    rows: list[StatsRow]


@dataclass
class _Accumulator:
    traffic: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_TRAFFIC, 0))
    money: dict[str, dict[str, int]] = field(default_factory=dict)
    verification: dict[str, dict[str, int]] = field(default_factory=dict)

    def add_verification(
        self, currency: str, verified: bool, conversions: int, revenue: int
    ) -> None:
        prefix = "verified" if verified else "unverified"
        bucket = self.verification.setdefault(currency, dict.fromkeys(_VERIFICATION, 0))
        bucket[f"{prefix}_conversions"] += conversions
        bucket[f"{prefix}_revenue_minor"] += revenue

    def add(self, currency: str, values: dict[str, int]) -> None:
        for name in _TRAFFIC:
            self.traffic[name] += values[name]
        if values["conversions"] or values["revenue_minor"] or values["commission_minor"]:
            bucket = self.money.setdefault(currency, dict.fromkeys(_MONEY, 0))
            for name in _MONEY:
                bucket[name] += values[name]

    def totals(self) -> Totals:
        by_currency = [
            CurrencyTotals(currency=code, **values, **self.verification.get(code, {}))
            for code, values in sorted(self.money.items())
        ]
        single = by_currency[0] if len(by_currency) == 1 else None
        return Totals(
            **self.traffic,
            conversions=sum(c.conversions for c in by_currency),
            verified_conversions=sum(c.verified_conversions for c in by_currency),
            unverified_conversions=sum(c.unverified_conversions for c in by_currency),
            verified_revenue_minor=single.verified_revenue_minor
            if single
            else (0 if not by_currency else None),
            unverified_revenue_minor=single.unverified_revenue_minor
            if single
            else (0 if not by_currency else None),
            revenue_minor=single.revenue_minor if single else (0 if not by_currency else None),
            commission_minor=single.commission_minor
            if single
            else (0 if not by_currency else None),
            currency=single.currency if single else None,
            by_currency=by_currency,
        )


def _group_column(group_by: GroupBy | None) -> Any:
    table = StatsHourly.__table__.c
    match group_by:
        case "day":
            return (table.hour_ms // DAY_MS).label("key")
        case "partner":
            return table.partner_id.label("key")
        case "campaign":
            return table.campaign_id.label("key")
        case "link":
            return table.link_id.label("key")
        case None:
            return None


def _conversion_group_column(group_by: GroupBy | None) -> Any:
    """``_group_column``'s key over raw conversions (unattributed ones are 0 in the rollup)."""
    table = Conversion.__table__.c
    match group_by:
        case "day":
            return (table.at_ms // DAY_MS).label("key")
        case "partner" | "campaign" | "link":
            return func.coalesce(table[f"{group_by}_id"], 0).label("key")
        case None:
            return None


async def _add_verification(
    session: AsyncSession,
    viewer: Viewer,
    start: datetime,
    end: datetime,
    group_by: GroupBy | None,
    overall: _Accumulator,
    per_key: dict[Any, _Accumulator],
) -> None:
    table = Conversion.__table__.c
    group = _conversion_group_column(group_by)
    keys = (
        [table.currency, table.verified]
        if group is None
        else [group, table.currency, table.verified]
    )
    statement = (
        select(
            *keys,
            func.count().label("n"),
            exact_sum(table.amount_minor).label("revenue"),
        )
        .where(
            table.at_ms >= int(start.timestamp() * 1000),
            table.at_ms < int(end.timestamp() * 1000),
            table.status.in_(_COUNTED),
        )
        .group_by(*keys)
    )
    statement = viewer.restrict(statement, table.partner_id)
    for row in (await session.execute(statement)).mappings():
        values = (row["currency"], bool(row["verified"]), int(row["n"]), int(row["revenue"]))
        overall.add_verification(*values)
        if group is not None:
            per_key.setdefault(row["key"], _Accumulator()).add_verification(*values)


def _day_label(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * DAY_MS / 1000, UTC).strftime("%Y-%m-%d")


async def stats_report(
    session: AsyncSession,
    viewer: Viewer,
    start: datetime,
    end: datetime,
    group_by: GroupBy | None = None,
) -> StatsReport:
    """Totals for ``[start, end)`` (hour resolution) and, with ``group_by``, one row per key."""
    table = StatsHourly.__table__.c
    group = _group_column(group_by)
    sums = [
        *(func.coalesce(func.sum(table[name]), 0).label(name) for name in _TRAFFIC),
        *(exact_sum(table[name]).label(name) for name in _MONEY),
    ]
    columns = [table.currency, *sums] if group is None else [group, table.currency, *sums]
    statement = select(*columns).where(
        table.hour_ms >= int(start.timestamp() * 1000),
        table.hour_ms < int(end.timestamp() * 1000),
    )
    statement = viewer.restrict(statement, table.partner_id)
    statement = statement.group_by(
        *([table.currency] if group is None else [group, table.currency])
    )
    result = (await session.execute(statement)).mappings().all()
    overall = _Accumulator()
    per_key: dict[Any, _Accumulator] = {}
    for row in result:
        values = {name: int(row[name]) for name in _TRAFFIC + _MONEY}
        overall.add(row["currency"], values)
        if group is not None:
            per_key.setdefault(row["key"], _Accumulator()).add(row["currency"], values)
    await _add_verification(session, viewer, start, end, group_by, overall, per_key)
    rows = [
        StatsRow(key=_day_label(key) if group_by == "day" else key, totals=acc.totals())
        for key, acc in sorted(per_key.items(), key=lambda item: item[0])
    ]
    return StatsReport(start=start, end=end, group_by=group_by, totals=overall.totals(), rows=rows)
