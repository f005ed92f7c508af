"""PostgreSQL: clicks and impressions range-partitioned by month on their time-ordered ids

Each table is renamed aside, recreated as a partitioned table with the same columns and
primary key, given a DEFAULT partition and monthly partitions from its oldest row's month to
two months ahead (``backend.storage.db.partitions``), refilled and the old table dropped. Nothing
changes on SQLite, which has no partitions.

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

from backend.core.clock import now_ms
from backend.storage.db.partitions import PARTITIONED, ensure_partitions

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _swap_out(table: str) -> str:
    """Rename ``table`` (and its primary key) aside; return the new name."""
    old = f"{table}_unpartitioned"
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT pk_{table} TO pk_{old}")
    return old


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    oldest: int | None = None
    for table in PARTITIONED:
        old = _swap_out(table.name)
        op.execute(
            f"CREATE TABLE {table.name} (LIKE {old} INCLUDING DEFAULTS)"
            f" PARTITION BY RANGE ({table.key})"
        )
        op.execute(
            f"ALTER TABLE {table.name} ADD CONSTRAINT pk_{table.name} PRIMARY KEY ({table.key})"
        )
        op.execute(f"CREATE TABLE {table.default} PARTITION OF {table.name} DEFAULT")
        first = connection.execute(text(f"SELECT min(at_ms) FROM {old}")).scalar()  # noqa: S608
        if first is not None:
            oldest = first if oldest is None else min(oldest, first)
    ensure_partitions(connection, now_ms(), since_ms=oldest)
    for table in PARTITIONED:
        old = f"{table.name}_unpartitioned"
        op.execute(f"INSERT INTO {table.name} SELECT * FROM {old}")  # noqa: S608
        op.execute(f"DROP TABLE {old}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in PARTITIONED:
        old = _swap_out(table.name)
        op.execute(f"CREATE TABLE {table.name} (LIKE {old} INCLUDING DEFAULTS)")
        op.execute(
            f"ALTER TABLE {table.name} ADD CONSTRAINT pk_{table.name} PRIMARY KEY ({table.key})"
        )
        op.execute(f"INSERT INTO {table.name} SELECT * FROM {old}")  # noqa: S608
        op.execute(f"DROP TABLE {old}")  # its partitions go with it
