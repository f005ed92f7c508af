"""Breakdown tables: one row per value of a dimension, sorted as the viewer asked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.domain.reports.dimensions import Filters
from backend.domain.reports.metrics import collect, names
from backend.domain.reports.ranges import DateRange
from backend.storage.rollups.dimensions import Dimension
from backend.storage.rollups.measures import Metrics

SORTS = (
    "name",
    "clicks",
    "unique_clicks",
    "bot_clicks",
    "conversions",
    "conversion_rate",
    "revenue",
    "commission",
    "epc",
)
SHOWN_ROWS = 500


@dataclass(frozen=True, slots=True)
class BreakdownRow:
    key: Any
    label: str
    metrics: Metrics


@dataclass(frozen=True, slots=True)
class BreakdownReport:
    dimension: Dimension
    rows: list[BreakdownRow]
    total_rows: int
    totals: Metrics
    currencies: list[str]
    sort: str
    descending: bool


def _sort_key(sort: str, currency: str | None) -> Callable[[BreakdownRow], Any]:
    def key(row: BreakdownRow) -> Any:
        metrics = row.metrics
        match sort:
            case "name":
                return row.label.lower()
            case "conversion_rate":
                return metrics.conversion_rate or 0.0
            case "revenue":
                return metrics.revenue(currency) if currency else 0
            case "commission":
                return metrics.commission(currency) if currency else 0
            case "epc":
                return (metrics.epc(currency) or 0.0) if currency else 0.0
            case _:
                return getattr(metrics, sort)

    return key


async def breakdown_report(
    session: AsyncSession,
    viewer: Viewer,
    period: DateRange,
    filters: Filters,
    dimension: Dimension,
    sort: str = "clicks",
    descending: bool = True,
    limit: int | None = SHOWN_ROWS,
) -> BreakdownReport:
    """Money sorts by the first currency of the period (amounts never add across currencies)."""
    figures = await collect(session, viewer, period.start_ms, period.end_ms, filters, dimension)
    labels = await names(session, dimension, [key for _, key in figures])
    totals = Metrics()
    rows: list[BreakdownRow] = []
    for (_, key), metrics in figures.items():
        totals.merge(metrics)
        label = labels.get(key, f"#{key}") if dimension.is_id else str(key)
        if dimension.is_id and key == 0:
            label = "(unattributed)"
        rows.append(BreakdownRow(key, label or "(none)", metrics))
    currencies = totals.currencies
    rows.sort(key=lambda row: row.label.lower())
    rows.sort(key=_sort_key(sort, currencies[0] if currencies else None), reverse=descending)
    return BreakdownReport(
        dimension=dimension,
        rows=rows[:limit] if limit else rows,
        total_rows=len(rows),
        totals=totals,
        currencies=currencies,
        sort=sort,
        descending=descending,
    )
