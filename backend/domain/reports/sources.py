"""The per-network report: each conversion source's clicks (its merchant's), conversions,
conversion rate, revenue, commission and average order value, for the whole range and per UTC
day, from the report engine (``metrics.by_source``) within the viewer's scope."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import DAY_MS
from backend.core.money import format_minor
from backend.core.scope import Viewer
from backend.domain.reports.csv_cells import CsvCell
from backend.domain.reports.metrics import by_source
from backend.storage.db.models import ConversionSource, Merchant
from backend.storage.rollups.measures import Metrics


def average_order_minor(metrics: Metrics, currency: str) -> int | None:
    """Revenue per conversion in ``currency``, rounded down to a minor unit; None without one."""
    money = metrics.money.get(currency)
    if money is None or money.conversions <= 0:
        return None
    return money.revenue_minor // money.conversions


@dataclass
class SourceRow:
    source_id: int
    name: str
    merchant: str
    metrics: Metrics
    days: list[tuple[str, Metrics]] = field(default_factory=list)  # UTC days with figures


@dataclass
class SourceReport:
    rows: list[SourceRow]
    currencies: list[str]


def _day(bucket_ms: int) -> str:
    return datetime.fromtimestamp(bucket_ms / 1000, UTC).strftime("%Y-%m-%d")


async def source_report(
    session: AsyncSession, viewer: Viewer, start_ms: int, end_ms: int
) -> SourceReport:
    whole = await by_source(session, viewer, start_ms, end_ms)
    daily = await by_source(session, viewer, start_ms, end_ms, bucket_ms=DAY_MS)
    named = await session.execute(
        select(ConversionSource.id, ConversionSource.name, Merchant.name).join(
            Merchant, Merchant.id == ConversionSource.merchant_id
        )
    )
    names = {source_id: (name, merchant) for source_id, name, merchant in named}
    rows: dict[int, SourceRow] = {}
    for (_, source_id), metrics in whole.items():
        name, merchant = names.get(source_id, (f"deleted source #{source_id}", ""))
        rows[source_id] = SourceRow(source_id, name, merchant, metrics)
    for (bucket, source_id), metrics in sorted(daily.items(), key=lambda item: item[0]):
        if source_id in rows and bucket is not None:
            rows[source_id].days.append((_day(bucket), metrics))
    currencies = sorted({code for row in rows.values() for code in row.metrics.currencies})
    ordered = sorted(rows.values(), key=lambda row: (row.name.lower(), row.source_id))
    return SourceReport(ordered, currencies)


def source_table(report: SourceReport) -> tuple[list[str], Iterator[list[CsvCell]]]:
    """The report as a CSV table: a header, and per source a "total" row, then one per day."""

    def cells(metrics: Metrics) -> list[CsvCell]:
        rate = metrics.conversion_rate
        money: list[CsvCell] = []
        for code in report.currencies:
            aov = average_order_minor(metrics, code)
            money += [
                format_minor(metrics.revenue(code), code),
                format_minor(metrics.commission(code), code),
                None if aov is None else format_minor(aov, code),
            ]
        return [
            metrics.clicks,
            metrics.conversions,
            None if rate is None else round(rate, 4),
            *money,
        ]

    header = ["source_id", "source", "merchant", "day", "clicks", "conversions", "conversion_rate"]
    header += [
        f"{name} {code}" for code in report.currencies for name in ("revenue", "commission", "aov")
    ]
    rows = (
        [row.source_id, row.name, row.merchant, day, *cells(metrics)]
        for row in report.rows
        for day, metrics in [("total", row.metrics), *row.days]
    )
    return header, rows
