"""affiliate rules: verified conversions, their audit trail, commission overrides, auto-approval,
postback secret rotation, link health

Pixel and JS conversions are unverified until a signed postback or a person confirms them.
Before this revision only postbacks and people (through the API) could be behind a conversion
or its approval, so those already approved (or since reversed) count as verified.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conversions") as batch:
        batch.add_column(
            sa.Column("verified", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.execute(
        "UPDATE conversions SET verified = true"
        " WHERE source = 'postback' OR status IN ('approved', 'reversed')"
    )
    with op.batch_alter_table("merchants") as batch:
        batch.add_column(sa.Column("auto_approve_days", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("previous_postback_secret", sa.String(80), nullable=True))
        batch.add_column(sa.Column("previous_secret_until_ms", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("links") as batch:
        batch.add_column(sa.Column("health", sa.String(16), nullable=True))
        batch.add_column(
            sa.Column("health_detail", sa.String(255), server_default="", nullable=False)
        )
    op.create_table(
        "conversion_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversion_id", sa.Integer(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=False),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversion_id"],
            ["conversions.id"],
            name=op.f("fk_conversion_changes_conversion_id_conversions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversion_changes")),
    )
    op.create_index(
        op.f("ix_conversion_changes_conversion_id"), "conversion_changes", ["conversion_id"]
    )
    op.create_table(
        "commission_overrides",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("commission_bps", sa.Integer(), nullable=False),
        sa.Column("commission_flat_minor", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_commission_overrides_campaign_id_campaigns"),
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["partners.id"],
            name=op.f("fk_commission_overrides_partner_id_partners"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commission_overrides")),
        sa.UniqueConstraint(
            "partner_id", "campaign_id", name=op.f("uq_commission_overrides_partner_id_campaign_id")
        ),
    )
    op.create_index(
        op.f("ix_commission_overrides_campaign_id"), "commission_overrides", ["campaign_id"]
    )


def downgrade() -> None:
    op.drop_table("commission_overrides")
    op.drop_table("conversion_changes")
    with op.batch_alter_table("links") as batch:
        batch.drop_column("health_detail")
        batch.drop_column("health")
    with op.batch_alter_table("merchants") as batch:
        batch.drop_column("previous_secret_until_ms")
        batch.drop_column("previous_postback_secret")
        batch.drop_column("auto_approve_days")
    with op.batch_alter_table("conversions") as batch:
        batch.drop_column("verified")
