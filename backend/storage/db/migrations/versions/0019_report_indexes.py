"""report indexes: raw clicks by sub-id 1 within time (``sub1``, ``click_id``), and counted
conversions by their click (``status``, ``click_id``, ``at_ms``, ``flags``).

- A report with several text filters, one of them a sub-id (the filter partners use most),
  reads that sub-id's clicks in the range instead of every click in it: the dimension rollup
  serves one text dimension at a time, several at once read raw rows
  (``backend.domain.reports.metrics``). On PostgreSQL the index is made on the partitioned
  table, which makes it on every partition, present and future.
- The overview's conversion rate counts the clicks of a range that converted
  (``metrics.converted_clicks``) twice a render (the period and the one before); the second
  index answers it from the index alone, without reading a conversion row.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLICKS_INDEX = "ix_clicks_sub1_click_id"
CONVERSIONS_INDEX = "ix_conversions_status_click_id_at_ms_flags"


def upgrade() -> None:
    op.create_index(CLICKS_INDEX, "clicks", ["sub1", "click_id"])
    op.create_index(CONVERSIONS_INDEX, "conversions", ["status", "click_id", "at_ms", "flags"])


def downgrade() -> None:
    op.drop_index(CONVERSIONS_INDEX, table_name="conversions")
    op.drop_index(CLICKS_INDEX, table_name="clicks")
