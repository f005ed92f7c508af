"""``clicktrail export``: the report pages' and the conversions list's CSV downloads, written
to stdout or a file, with the same columns, filters (the pages' query names) and formula-safe
cells."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterable, Iterable, Sequence
from datetime import date
from typing import TextIO

from backend.cli.database import existing_database
from backend.core.scope import ADMIN
from backend.core.settings import Settings
from backend.domain.reports.breakdown import breakdown_report
from backend.domain.reports.csv_cells import CsvCell
from backend.domain.reports.dimensions import FilterError, parse_filters
from backend.domain.reports.overview import overview_report
from backend.domain.reports.ranges import RangeError, resolve_range
from backend.storage.rollups.dimensions import DIMENSIONS
from backend.web.admin.conversions import CSV_HEADER, ConversionFilter, csv_rows
from backend.web.pages.export import breakdown_table, csv_lines, overview_table


def cmd_export(settings: Settings, args: argparse.Namespace) -> None:
    output = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115
    try:
        asyncio.run(_export(settings, args, output))
    finally:
        if output is not sys.stdout:
            output.close()


async def _export(settings: Settings, args: argparse.Namespace, output: TextIO) -> None:
    async with existing_database(settings) as database:
        if args.what == "conversions":
            conversions = ConversionFilter(args.status, args.partner, args.campaign)
            await _write(output, CSV_HEADER, csv_rows(database, ADMIN, conversions))
            return
        try:
            period = resolve_range(
                "custom" if args.since or args.until else args.range,
                args.since,
                args.until or (date.today() if args.since else None),
                args.tz,
                args.bucket,
            )
            filters = parse_filters(dict(_pairs(args.filter)))
        except (RangeError, FilterError) as error:
            raise SystemExit(str(error)) from None
        async with database.session() as session:
            if args.by is None:
                table = overview_table(await overview_report(session, ADMIN, period, filters))
            else:
                dimension = DIMENSIONS[args.by]
                report = await breakdown_report(
                    session, ADMIN, period, filters, dimension, limit=None
                )
                table = breakdown_table(report)
        await _write(output, *table)


def _pairs(filters: Sequence[str]) -> Iterable[tuple[str, str]]:
    for item in filters:
        name, equals, value = item.partition("=")
        if not equals or name not in DIMENSIONS:
            raise SystemExit(
                f"--filter {item!r}: expected NAME=VALUE with NAME one of {', '.join(DIMENSIONS)}"
            )
        yield name, value


async def _write(
    output: TextIO,
    header: Sequence[str],
    rows: AsyncIterable[Sequence[CsvCell]] | Iterable[Sequence[CsvCell]],
) -> None:
    async for line in csv_lines(header, rows):
        output.write(line)
