"""report indexes: counted conversions by their click (``status``, ``click_id``, ``at_ms``,
``flags``), so the overview's conversion rate, which counts the clicks of a range that
converted (``metrics.converted_clicks``) twice a render (the period and the one before), is
answered from the index alone, without reading a conversion row.

Conversions are a few in a hundred events: the index costs the worker's write little. An index
on clicks for the raw reads of several text filters was measured and left out: one on
(sub1, click_id) halved such reports when a sub-id was among the filters but slowed a plain
``executemany`` of clicks by a third (docs/benchmarks.md, "Report pages").

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

INDEX = "ix_conversions_status_click_id_at_ms_flags"


def upgrade() -> None:
    op.create_index(INDEX, "conversions", ["status", "click_id", "at_ms", "flags"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="conversions")
