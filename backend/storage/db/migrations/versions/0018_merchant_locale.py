"""merchant locale: how the pages write a merchant's money (``merchants.locale``, a CLDR
locale; "en" for the merchants there are, which writes "€1,234.50").

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("merchants") as table:
        table.add_column(sa.Column("locale", sa.String(35), nullable=False, server_default="en"))


def downgrade() -> None:
    with op.batch_alter_table("merchants") as table:
        table.drop_column("locale")
