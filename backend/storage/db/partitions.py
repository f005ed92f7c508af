"""Monthly partitions of the raw event tables on PostgreSQL (DESIGN §6).

``clicks`` and ``impressions`` are range-partitioned by month on their primary keys, which
start with the event time (``backend.core.ids``): the key stays the id alone, so the worker's
``ON CONFLICT (click_id) DO NOTHING`` works unchanged, and retention drops a month with one
``DROP TABLE`` instead of deleting rows one by one. Partitions are made ahead of time (this
month and the next ``MONTHS_AHEAD``) by the migration and a daily cron job; a ``DEFAULT``
partition takes whatever falls outside them, and its rows move into a month's partition when
that partition is made. SQLite has no partitions: there, nothing here runs.

The functions take a synchronous connection (Alembic's); async callers use ``run_sync``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

from backend.core import clock, ids
from backend.storage.db.engine import Database

MONTHS_AHEAD = 2
Month = tuple[int, int]  # (year, month)


@dataclass(frozen=True, slots=True)
class PartitionedTable:
    name: str
    key: str
    floor: Callable[[int], str]  # the smallest key of an event at a time (epoch ms)

    def partition(self, month: Month) -> str:
        return f"{self.name}_{month[0]:04d}_{month[1]:02d}"

    @property
    def default(self) -> str:
        return f"{self.name}_default"

    def bounds(self, month: Month) -> tuple[str, str]:
        """The keys of the month's first millisecond and of the next month's (exclusive)."""
        return self.floor(month_start_ms(month)), self.floor(month_start_ms(next_month(month)))


PARTITIONED = (
    PartitionedTable("clicks", "click_id", ids.click_id_floor),
    PartitionedTable("impressions", "event_id", ids.event_id_floor),
)


def month_of(at_ms: int) -> Month:
    moment = datetime.fromtimestamp(at_ms / 1000, UTC)
    return moment.year, moment.month


def next_month(month: Month) -> Month:
    year, number = month
    return (year + 1, 1) if number == 12 else (year, number + 1)


def month_start_ms(month: Month) -> int:
    return int(datetime(month[0], month[1], 1, tzinfo=UTC).timestamp() * 1000)


def months(first: Month, last: Month) -> list[Month]:
    """Every month from ``first`` to ``last``, both included."""
    span = [first]
    while span[-1] < last:
        span.append(next_month(span[-1]))
    return span


def monthly_partitions(connection: Connection, table: PartitionedTable) -> dict[Month, str]:
    """The table's monthly partitions by month (the DEFAULT one is not among them)."""
    names = connection.execute(
        text(
            "SELECT child.relname FROM pg_inherits"
            " JOIN pg_class child ON child.oid = pg_inherits.inhrelid"
            " JOIN pg_class parent ON parent.oid = pg_inherits.inhparent"
            " WHERE parent.relname = :table AND parent.relnamespace = child.relnamespace"
            " AND parent.relnamespace = to_regnamespace(current_schema())"
        ),
        {"table": table.name},
    ).scalars()
    pattern = re.compile(rf"{re.escape(table.name)}_(\d{{4}})_(\d{{2}})")
    found: dict[Month, str] = {}
    for name in names:
        if match := pattern.fullmatch(name):
            found[int(match[1]), int(match[2])] = name
    return found


def create_partition(connection: Connection, table: PartitionedTable, month: Month) -> str:
    """Create one month's partition, first moving its rows out of the DEFAULT partition
    (PostgreSQL refuses a new partition whose rows the DEFAULT one still holds)."""
    name = table.partition(month)
    low, high = table.bounds(month)
    in_range = f"{table.key} >= :low AND {table.key} < :high"
    bounds = {"low": low, "high": high}
    # Names below are built from PARTITIONED and a month, never from input.
    connection.execute(text(f"CREATE TEMPORARY TABLE moving (LIKE {table.name})"))
    connection.execute(
        text(
            f"WITH moved AS (DELETE FROM {table.default} WHERE {in_range} RETURNING *)"  # noqa: S608
            " INSERT INTO moving SELECT * FROM moved"
        ),
        bounds,
    )
    connection.execute(
        text(
            f"CREATE TABLE {name} PARTITION OF {table.name} FOR VALUES FROM ('{low}') TO ('{high}')"
        )
    )
    connection.execute(text(f"INSERT INTO {table.name} SELECT * FROM moving"))  # noqa: S608
    connection.execute(text("DROP TABLE moving"))
    return name


def ensure_partitions(
    connection: Connection, now_ms: int, since_ms: int | None = None
) -> list[str]:
    """Create the missing monthly partitions from ``since_ms``'s month (default: this one)
    to ``MONTHS_AHEAD`` months after ``now_ms``'s; return the names created."""
    last = month_of(now_ms)
    for _ in range(MONTHS_AHEAD):
        last = next_month(last)
    first = month_of(now_ms if since_ms is None else min(since_ms, now_ms))
    created: list[str] = []
    for table in PARTITIONED:
        existing = monthly_partitions(connection, table)
        for month in months(first, last):
            if month not in existing:
                created.append(create_partition(connection, table, month))
    return created


def drop_partitions_before(connection: Connection, cutoff_ms: int) -> dict[str, int]:
    """Drop the monthly partitions that end at or before ``cutoff_ms``; return the rows they
    held per table. Rows of the month the cutoff falls in are left to row deletes."""
    dropped: dict[str, int] = {}
    for table in PARTITIONED:
        dropped[table.name] = 0
        for month, name in sorted(monthly_partitions(connection, table).items()):
            if month_start_ms(next_month(month)) > cutoff_ms:
                break
            rows = connection.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()  # noqa: S608
            connection.execute(text(f"DROP TABLE {name}"))
            dropped[table.name] += int(rows)
    return dropped


async def create_ahead(database: Database, now_ms: int | None = None) -> list[str]:
    """The daily job: this month's and the next ``MONTHS_AHEAD`` months' partitions exist.
    Nothing to do on SQLite."""
    if database.dialect != "postgresql":
        return []
    at_ms = clock.now_ms() if now_ms is None else now_ms
    async with database.writing() as connection:
        return await connection.run_sync(ensure_partitions, at_ms)
