"""SQL aggregates shared by the rollup fold and the raw-row reports, so the two count alike
(and as the worker's hourly stats do: a click is billable, a bot's, or flagged, once)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, and_, case, func, literal_column
from sqlalchemy.sql import ColumnElement

HOUR_MS = 3_600_000


def bucket_of(at_ms: Any, size_ms: int) -> Any:
    """The start of the ``size_ms`` bucket of an epoch-milliseconds column. The size is
    written into the SQL (not bound), so PostgreSQL sees the SELECT and GROUP BY
    expressions as the same."""
    size = literal_column(str(int(size_ms)), BigInteger)
    return (at_ms // size) * size


def hour_of(at_ms: Any) -> Any:
    """The start of the UTC hour of an epoch-milliseconds column."""
    return bucket_of(at_ms, HOUR_MS)


def _count_where(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def click_counters(clicks: Any) -> list[ColumnElement[Any]]:
    """clicks (billable), unique_clicks, bot_clicks, flagged_clicks of raw click rows."""
    return [
        _count_where(clicks.flags == ""),
        _count_where(clicks.is_unique.is_(True)),
        _count_where(clicks.is_bot.is_(True)),
        _count_where(and_(clicks.flags != "", clicks.is_bot.is_(False))),
    ]


def money_counters(conversions: Any) -> list[ColumnElement[Any]]:
    """conversions, revenue_minor, commission_minor of raw conversion rows."""
    return [
        func.count(),
        func.coalesce(func.sum(conversions.amount_minor), 0),
        func.coalesce(func.sum(conversions.commission_minor), 0),
    ]


def or_empty(column: Any) -> Any:
    """``column``, or '' where NULL (a conversion without a click); the constant is written
    into the SQL for the same reason as in ``bucket_of``."""
    return func.coalesce(column, literal_column("''"))


def or_zero(column: Any) -> Any:
    """``column``, or 0 where NULL (an unattributed conversion's partner, campaign, link)."""
    return func.coalesce(column, literal_column("0"))
