"""What the rollups count, defined once: each measure's SQL over raw rows, its name in the
rollup tables, and what the figures mean in Python (sums, rates).

Every stored click counts in exactly one of ``STORED_CLICKS``:
- ``clicks``, billable: a person's click with no flag; ``unique_clicks`` are those that were the
  visitor's first on the link that day;
- ``bot_clicks``: a bot's click (``clicks.is_bot``, always flagged ``bot:``);
- ``flagged_clicks``: a person's click flagged (duplicate, rate limited): shown, never billed.
A conversion counts, with its revenue and commission, while its status is in ``COUNTED``: a
status change out of it takes the conversion out of both rollups in its transaction.
``stats_hourly`` (written by the worker), ``dimension_hourly`` (folded from raw rows) and the
reports over raw rows all count by these definitions, so the three always agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, case, func
from sqlalchemy.sql import ColumnElement

from backend.storage.db.models import ConversionStatus
from backend.storage.rollups.sql import exact_sum

COUNTED = frozenset({ConversionStatus.PENDING, ConversionStatus.APPROVED})
CLICK_COUNTERS = ("clicks", "unique_clicks", "bot_clicks", "flagged_clicks")
STORED_CLICKS = ("clicks", "bot_clicks", "flagged_clicks")
MONEY_COUNTERS = ("conversions", "revenue_minor", "commission_minor")
# The counters report queries select, in this order.
COUNTERS = (*CLICK_COUNTERS, "impressions", *MONEY_COUNTERS)
# ``stats_hourly``'s counter columns: those, and the clicks that converted (the conversion
# rate's numerator, by the hour of the click; ``backend.domain.affiliate.converted``).
STATS_COUNTERS = (*COUNTERS, "converted_clicks")
AMOUNTS = frozenset({"revenue_minor", "commission_minor"})


def click_counts(is_bot: bool, is_unique: bool, flags: str) -> dict[str, int]:
    """What one stored click adds to ``CLICK_COUNTERS``, as ``click_counters`` counts it in SQL."""
    return {
        "clicks": int(not flags),
        "unique_clicks": int(is_unique),
        "bot_clicks": int(is_bot),
        "flagged_clicks": int(bool(flags) and not is_bot),
    }


def _count_where(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def click_counters(clicks: Any) -> list[ColumnElement[Any]]:
    """``CLICK_COUNTERS`` of raw click rows."""
    return [
        _count_where(clicks.flags == ""),
        _count_where(clicks.is_unique.is_(True)),
        _count_where(clicks.is_bot.is_(True)),
        _count_where(and_(clicks.flags != "", clicks.is_bot.is_(False))),
    ]


def money_counters(conversions: Any, exact: bool = True) -> list[ColumnElement[Any]]:
    """``MONEY_COUNTERS`` of raw conversion rows; ``exact=False`` for the SQL sums an
    ``INSERT ... SELECT`` writes into a 64-bit column."""
    total = exact_sum if exact else (lambda column: func.coalesce(func.sum(column), 0))
    return [
        func.count(),
        total(conversions.amount_minor),
        total(conversions.commission_minor),
    ]


def counted(conversions: Any) -> ColumnElement[bool]:
    """Whether a conversion row counts: its status is in ``COUNTED``."""
    condition: ColumnElement[bool] = conversions.status.in_(
        sorted(status.value for status in COUNTED)
    )
    return condition


def total(column: Any) -> Any:
    """The sum of a rollup counter: exact for money, which a sum could take past 64 bits."""
    return exact_sum(column) if column.name in AMOUNTS else func.coalesce(func.sum(column), 0)


@dataclass
class Money:
    """One currency's conversions and their sums."""

    conversions: int = 0
    revenue_minor: int = 0
    commission_minor: int = 0


@dataclass
class Metrics:
    """Counts that add up across currencies, and money kept apart by currency."""

    clicks: int = 0
    unique_clicks: int = 0
    bot_clicks: int = 0
    flagged_clicks: int = 0
    impressions: int = 0
    conversions: int = 0
    money: dict[str, Money] = field(default_factory=dict)

    def add(self, currency: str, values: tuple[int, ...]) -> None:
        """Add one row of ``COUNTERS`` in ``currency``."""
        clicks, unique, bots, flagged, impressions, conversions, revenue, commission = values
        self.clicks += clicks
        self.unique_clicks += unique
        self.bot_clicks += bots
        self.flagged_clicks += flagged
        self.impressions += impressions
        self.conversions += conversions
        if conversions or revenue or commission:
            bucket = self.money.setdefault(currency, Money())
            bucket.conversions += conversions
            bucket.revenue_minor += revenue
            bucket.commission_minor += commission

    def merge(self, other: Metrics, sign: int = 1) -> None:
        """Add (``sign`` 1) or take away (-1) ``other``'s figures."""
        for name in (*CLICK_COUNTERS, "impressions", "conversions"):
            setattr(self, name, getattr(self, name) + sign * getattr(other, name))
        for currency, money in other.money.items():
            bucket = self.money.setdefault(currency, Money())
            bucket.conversions += sign * money.conversions
            bucket.revenue_minor += sign * money.revenue_minor
            bucket.commission_minor += sign * money.commission_minor

    @property
    def stored_clicks(self) -> int:
        """Every stored click: billable, a bot's or flagged."""
        return sum(getattr(self, name) for name in STORED_CLICKS)

    @property
    def currencies(self) -> list[str]:
        return sorted(
            code
            for code, money in self.money.items()
            if money.revenue_minor or money.commission_minor
        )

    def revenue(self, currency: str) -> int:
        return self.money.get(currency, Money()).revenue_minor

    def commission(self, currency: str) -> int:
        return self.money.get(currency, Money()).commission_minor

    @property
    def conversion_rate(self) -> float | None:
        return self.conversions / self.clicks if self.clicks else None

    def epc(self, currency: str) -> float | None:
        """Earnings (commission) per billable click, in minor units."""
        return self.commission(currency) / self.clicks if self.clicks else None


@dataclass
class Verification:
    """One currency's counted conversions and revenue split by whether a signed postback or a
    person confirmed the sale (verified) or only a pixel or the snippet, which anyone can
    fire, reported it (unverified)."""

    verified_conversions: int = 0
    verified_revenue_minor: int = 0
    unverified_conversions: int = 0
    unverified_revenue_minor: int = 0

    def add(self, verified: bool, conversions: int, revenue: int) -> None:
        if verified:
            self.verified_conversions += conversions
            self.verified_revenue_minor += revenue
        else:
            self.unverified_conversions += conversions
            self.unverified_revenue_minor += revenue

    def merge(self, other: Verification) -> None:
        self.add(True, other.verified_conversions, other.verified_revenue_minor)
        self.add(False, other.unverified_conversions, other.unverified_revenue_minor)
