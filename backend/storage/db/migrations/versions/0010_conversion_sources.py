"""conversion sources: networks that report a merchant's sales to /pb/{token} in their own
field names; which source reported a conversion and whether its commission is the network's

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "conversion_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("preset", sa.String(length=32), server_default="", nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("token_hint", sa.String(length=16), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("statuses", sa.JSON(), nullable=False),
        sa.Column("allow_ips", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_conversion_sources_merchant_id_merchants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversion_sources")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_conversion_sources_token_hash")),
    )
    op.create_index(
        op.f("ix_conversion_sources_merchant_id"), "conversion_sources", ["merchant_id"]
    )
    with op.batch_alter_table("conversions") as batch:
        batch.add_column(sa.Column("source_id", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column(
                "commission_reported", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
        batch.create_index(batch.f("ix_conversions_source_id"), ["source_id"])


def downgrade() -> None:
    with op.batch_alter_table("conversions") as batch:
        batch.drop_index(batch.f("ix_conversions_source_id"))
        batch.drop_column("commission_reported")
        batch.drop_column("source_id")
    op.drop_index(op.f("ix_conversion_sources_merchant_id"), table_name="conversion_sources")
    op.drop_table("conversion_sources")
