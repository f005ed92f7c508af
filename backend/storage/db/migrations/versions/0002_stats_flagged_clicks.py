"""stats_hourly.flagged_clicks: people's duplicate and rate-limited clicks, counted apart

Such clicks are stored but not billed, so they leave ``clicks``; the rollup is the only
record of them once raw clicks pass the retention period, and it keeps every stored click
counted exactly once (clicks + bot_clicks + flagged_clicks).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("stats_hourly") as batch:
        batch.add_column(
            sa.Column("flagged_clicks", sa.BigInteger(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("stats_hourly") as batch:
        batch.drop_column("flagged_clicks")
