"""CSV exports of the report tables, streamed, with spreadsheet formula injection neutralised.

Every table of the reports (and the admin's conversions list) exports through ``csv_stream``:
rows are written as they are produced, and a cell a spreadsheet would read as a formula
(starting with = + - @, tab or carriage return) is prefixed with an apostrophe (OWASP advice).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Any

from litestar.response import Stream

from backend.core.money import format_minor
from backend.domain.reports.breakdown import BreakdownReport
from backend.domain.reports.csv_cells import FORMULA_STARTS as FORMULA_STARTS
from backend.domain.reports.csv_cells import CsvCell as CsvCell
from backend.domain.reports.csv_cells import csv_line
from backend.domain.reports.csv_cells import neutralise as neutralise
from backend.domain.reports.overview import OverviewReport
from backend.domain.reports.quality import QualityReport
from backend.domain.reports.sources import SourceReport, source_table
from backend.storage.rollups.measures import Metrics

_line = csv_line  # the cells' one writer (``backend.domain.reports.csv_cells``)


async def csv_lines(
    header: Sequence[str], rows: AsyncIterable[Sequence[CsvCell]] | Iterable[Sequence[CsvCell]]
) -> AsyncIterator[str]:
    """The CSV text of ``header`` and ``rows``, a line at a time (rows read as they come)."""
    yield _line(header)
    if isinstance(rows, AsyncIterable):
        async for row in rows:
            yield _line(row)
    else:
        for row in rows:
            yield _line(row)


def csv_stream(
    filename: str,
    header: Sequence[str],
    rows: AsyncIterable[Sequence[CsvCell]] | Iterable[Sequence[CsvCell]],
) -> Stream:
    """A streamed ``text/csv`` download named ``filename`` (ours, never the user's text)."""
    headers: dict[str, Any] = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store",
    }
    return Stream(csv_lines(header, rows), media_type="text/csv; charset=utf-8", headers=headers)


def money_cells(metrics: Metrics, currencies: list[str]) -> list[CsvCell]:
    """Revenue and commission per currency, as decimal text (minor units never leave as floats)."""
    cells: list[CsvCell] = []
    for code in currencies:
        cells += [
            format_minor(metrics.revenue(code), code),
            format_minor(metrics.commission(code), code),
        ]
    return cells


def money_header(currencies: list[str]) -> list[str]:
    return [f"{name} {code}" for code in currencies for name in ("revenue", "commission")]


Table = tuple[list[str], Iterable[Sequence[CsvCell]]]  # a header and its rows


def overview_table(report: OverviewReport) -> Table:
    header = ["bucket", "clicks", "unique_clicks", "bot_clicks", "impressions", "conversions"]
    rows = (
        [
            row.label,
            row.metrics.clicks,
            row.metrics.unique_clicks,
            row.metrics.bot_clicks,
            row.metrics.impressions,
            row.metrics.conversions,
            *money_cells(row.metrics, report.currencies),
        ]
        for row in report.rows
    )
    return header + money_header(report.currencies), rows


def breakdown_table(report: BreakdownReport) -> Table:
    """Every row of ``report`` (the page shows the first ``SHOWN_ROWS``)."""
    name = report.dimension.name
    header = [name, "clicks", "unique_clicks", "bot_clicks", "flagged_clicks", "conversions"]
    rows = (
        [
            row.label,
            row.metrics.clicks,
            row.metrics.unique_clicks,
            row.metrics.bot_clicks,
            row.metrics.flagged_clicks,
            row.metrics.conversions,
            *money_cells(row.metrics, report.currencies),
        ]
        for row in report.rows
    )
    return header + money_header(report.currencies), rows


def overview_csv(report: OverviewReport) -> Stream:
    return csv_stream("overview.csv", *overview_table(report))


def breakdown_csv(report: BreakdownReport) -> Stream:
    return csv_stream(f"by-{report.dimension.name}.csv", *breakdown_table(report))


def quality_csv(report: QualityReport) -> Stream:
    rows = [
        ("clicks", "stored", report.clicks),
        *(("click_flag", flag, count) for flag, count in report.click_flags),
        ("conversions", "held_for_review", report.held_for_review),
        *(("rejected_event", reason, count) for reason, count in report.rejected),
    ]
    return csv_stream("quality.csv", ["kind", "name", "count"], rows)


def sources_csv(report: SourceReport) -> Stream:
    """One row per source for the whole range ("total"), then one per UTC day."""
    header, rows = source_table(report)
    return csv_stream("by-source.csv", header, rows)
