"""partner webhooks: a webhook endpoint may be a partner's own, which hears that partner's
conversions only (``webhook_endpoints.partner_id``; None: a merchant's or every merchant's, as
before).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as table:
        table.add_column(sa.Column("partner_id", sa.Integer(), nullable=True))
        table.create_foreign_key(
            "fk_webhook_endpoints_partner_id", "partners", ["partner_id"], ["id"]
        )
        table.create_index("ix_webhook_endpoints_partner_id", ["partner_id"])


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as table:
        table.drop_index("ix_webhook_endpoints_partner_id")
        table.drop_constraint("fk_webhook_endpoints_partner_id", type_="foreignkey")
        table.drop_column("partner_id")
