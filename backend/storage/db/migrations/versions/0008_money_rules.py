"""money rules: auto-approval of unverified conversions only up to an amount, a campaign's
status, the commission a decision changed in the audit trail

``merchants.auto_approve_unverified_max_minor``: None (the default, also for merchants that had
auto-approval on) approves only verified conversions automatically, since anyone can fire a
pixel. ``campaigns.status``: active or paused. ``conversion_changes.commission_from_minor`` and
``commission_to_minor``: the commission before and after a change that decided it (NULL when the
change left it alone).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("merchants") as batch:
        batch.add_column(
            sa.Column("auto_approve_unverified_max_minor", sa.BigInteger(), nullable=True)
        )
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(
            sa.Column("status", sa.String(16), server_default="active", nullable=False)
        )
    with op.batch_alter_table("conversion_changes") as batch:
        batch.add_column(sa.Column("commission_from_minor", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("commission_to_minor", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversion_changes") as batch:
        batch.drop_column("commission_to_minor")
        batch.drop_column("commission_from_minor")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("status")
    with op.batch_alter_table("merchants") as batch:
        batch.drop_column("auto_approve_unverified_max_minor")
