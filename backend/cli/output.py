"""What the management commands print: tables a person can read in a terminal."""

from __future__ import annotations

from collections.abc import Sequence


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]], empty: str) -> None:
    """``rows`` under ``header`` in left-aligned columns, or the line ``empty`` if none."""
    if not rows:
        print(empty)
        return
    lines = [list(header), *[["" if cell is None else str(cell) for cell in row] for row in rows]]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    for line in lines:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
