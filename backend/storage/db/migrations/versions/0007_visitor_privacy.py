"""visitor privacy: no network prefix in the database, referrers without their query strings

A click's /24 or /48 next to its visitor hash narrowed the address to 256 candidates for
whoever also had that day's salt; no report reads it, so clicks, impressions and conversions
lose the column (the prefix still travels to the worker for the quality windows in Redis).
Referrers and impression pages keep their origin and path: query strings and fragments carry
emails and tokens. PostgreSQL keeps a dropped column's values in the rows until they are
written again, so the prefixes are cleared first; SQLite rewrites the rows as it drops it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WITH_PREFIX = ("clicks", "impressions", "conversions")
_URLS = (("clicks", "referrer_url"), ("impressions", "page_url"))


def _before_query_or_fragment(column: str, dialect: str) -> str:
    """SQL for ``column`` up to its first ``?`` or ``#``."""
    position, smallest = ("instr", "min") if dialect == "sqlite" else ("strpos", "least")
    return (
        f"substr({column}, 1, {smallest}({position}({column} || '?', '?'),"
        f" {position}({column} || '#', '#')) - 1)"
    )


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in _WITH_PREFIX:
        if dialect == "postgresql":
            op.execute(f"UPDATE {table} SET ip_prefix = '' WHERE ip_prefix <> ''")  # noqa: S608
        op.drop_column(table, "ip_prefix")
    for table, column in _URLS:
        op.execute(
            f"UPDATE {table} SET {column} = {_before_query_or_fragment(column, dialect)}"  # noqa: S608
            f" WHERE {column} LIKE '%?%' OR {column} LIKE '%#%'"
        )


def downgrade() -> None:
    for table in _WITH_PREFIX:  # the prefixes are gone: empty, as for a postback's conversion
        op.add_column(
            table, sa.Column("ip_prefix", sa.String(64), server_default="", nullable=False)
        )
