"""CSV cells as report exports write them, with spreadsheet formula injection neutralised: a
cell a spreadsheet would read as a formula (starting with = + - @, tab or carriage return) is
prefixed with an apostrophe (OWASP advice). The web's downloads and the worker's scheduled
reports share it."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

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


def csv_line(cells: Iterable[CsvCell]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([neutralise(cell) for cell in cells])
    return buffer.getvalue()
