"""CSV exports, streamed, with spreadsheet formula injection neutralised.

Every table of the reports (and the admin's conversions list) exports through ``csv_stream``:
rows are written as they are produced, and a cell a spreadsheet would read as a formula
(starting with = + - @, tab or carriage return) is prefixed with an apostrophe (OWASP advice).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Any

from litestar.response import Stream

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CsvCell = str | int | float | None


def neutralise(value: CsvCell) -> str:
    """The cell as text; numbers stay numbers, text that could run as a formula does not."""
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _line(cells: Iterable[CsvCell]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([neutralise(cell) for cell in cells])
    return buffer.getvalue()


async def _lines(
    header: Sequence[str], rows: AsyncIterable[Sequence[CsvCell]] | Iterable[Sequence[CsvCell]]
) -> AsyncIterator[str]:
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
    return Stream(_lines(header, rows), media_type="text/csv; charset=utf-8", headers=headers)
