"""Scheduled reports the worker writes under ``var/reports/``: each Monday, the per-network
report of the week before (ISO week, UTC), ``sources-<year>-W<week>.csv``, the same table as the
Networks page's CSV. Written to a temporary file and renamed, so a reader never sees half of
one; a tick run again writes the same file again."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backend.core.clock import DAY_MS
from backend.core.private_files import private_directory, private_opener
from backend.core.scope import ADMIN
from backend.domain.reports.csv_cells import csv_line
from backend.domain.reports.sources import source_report, source_table
from backend.storage.db.engine import Database

WEEK_MS = 7 * DAY_MS


def last_week(now_ms: int) -> tuple[int, int, str]:
    """The ISO week (Monday to Sunday, UTC) before the one ``now_ms`` falls in: its start, its
    end and its name (``2026-W49``)."""
    today = datetime.fromtimestamp(now_ms / 1000, UTC).date()
    monday = today - timedelta(days=today.weekday() + 7)
    start_ms = int(datetime(monday.year, monday.month, monday.day, tzinfo=UTC).timestamp() * 1000)
    year, week, _ = monday.isocalendar()
    return start_ms, start_ms + WEEK_MS, f"{year}-W{week:02d}"


async def write_weekly_sources(database: Database, directory: Path, now_ms: int) -> Path:
    """Write last week's per-network CSV into ``directory``; return its path."""
    start_ms, end_ms, name = last_week(now_ms)
    async with database.session() as session:
        report = await source_report(session, ADMIN, start_ms, end_ms)
    header, rows = source_table(report)
    text = csv_line(header) + "".join(csv_line(row) for row in rows)
    path = directory / f"sources-{name}.csv"
    await asyncio.to_thread(_replace, path, text)
    return path


def _replace(path: Path, text: str) -> None:
    private_directory(path.parent)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w", encoding="utf-8", newline="", opener=private_opener) as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
