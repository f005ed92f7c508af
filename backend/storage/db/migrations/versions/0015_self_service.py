"""self service: the mail outbox, merchants' public programmes, partner applications,
programme members and single-use account tokens (password reset, invitation, confirmation)

``mail_outbox``: e-mails rendered when the change that causes them is written, sent by the
worker. ``programmes``: one per merchant that has set one up, closed by default.
``partner_applications``: an applicant's details and argon2 password hash until approval.
``programme_members``: which merchants' campaigns a partner may make its own links to.
``account_tokens``: the SHA-256 of tokens sent by e-mail, with their expiry and use.
``notification_settings``: the mails a partner user asked for. ``coupon_requests``: partners'
requests for coupon codes, until an admin decides.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=100), nullable=False),
        sa.Column("to_address", sa.String(length=320), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("sent_ms", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.String(length=500), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_outbox")),
        sa.UniqueConstraint("message_id", name=op.f("uq_mail_outbox_message_id")),
    )
    op.create_index(
        op.f("ix_mail_outbox_status_next_at_ms"), "mail_outbox", ["status", "next_at_ms"]
    )
    op.create_table(
        "programmes",
        sa.Column("merchant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("open", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("auto_approve", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("terms", sa.Text(), server_default="", nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_programmes_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("merchant_id", name=op.f("pk_programmes")),
        sa.UniqueConstraint("slug", name=op.f("uq_programmes_slug")),
    )
    op.create_table(
        "partner_applications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("website", sa.String(length=2048), nullable=False),
        sa.Column("promotion", sa.String(length=2000), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=True),
        sa.Column("decided_by", sa.String(length=200), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_partner_applications_merchant_id_merchants"),
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["partners.id"],
            name=op.f("fk_partner_applications_partner_id_partners"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partner_applications")),
    )
    op.create_index(
        op.f("ix_partner_applications_merchant_id"), "partner_applications", ["merchant_id"]
    )
    op.create_index(
        op.f("ix_partner_applications_status_id"), "partner_applications", ["status", "id"]
    )
    op.create_table(
        "programme_members",
        sa.Column("partner_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("merchant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_programme_members_partner_id_partners")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_programme_members_merchant_id_merchants"),
        ),
        sa.PrimaryKeyConstraint("partner_id", "merchant_id", name=op.f("pk_programme_members")),
    )
    op.create_table(
        "account_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("application_id", sa.Integer(), nullable=True),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("used_ms", sa.BigInteger(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_account_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["partner_applications.id"],
            name=op.f("fk_account_tokens_application_id_partner_applications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_account_tokens_token_hash")),
    )
    op.create_table(
        "notification_settings",
        sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("new_conversion", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("status_change", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("payout_sent", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_notification_settings_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_notification_settings")),
    )
    op.create_table(
        "coupon_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("coupon_id", sa.Integer(), nullable=True),
        sa.Column("decided_by", sa.String(length=200), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_coupon_requests_partner_id_partners")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_coupon_requests_campaign_id_campaigns"),
        ),
        sa.ForeignKeyConstraint(
            ["coupon_id"],
            ["coupons.id"],
            name=op.f("fk_coupon_requests_coupon_id_coupons"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_requests")),
    )
    op.create_index(op.f("ix_coupon_requests_partner_id"), "coupon_requests", ["partner_id"])
    op.create_index(op.f("ix_coupon_requests_status_id"), "coupon_requests", ["status", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_coupon_requests_status_id"), table_name="coupon_requests")
    op.drop_index(op.f("ix_coupon_requests_partner_id"), table_name="coupon_requests")
    op.drop_table("coupon_requests")
    op.drop_table("notification_settings")
    op.drop_table("account_tokens")
    op.drop_table("programme_members")
    op.drop_index(op.f("ix_partner_applications_status_id"), table_name="partner_applications")
    op.drop_index(op.f("ix_partner_applications_merchant_id"), table_name="partner_applications")
    op.drop_table("partner_applications")
    op.drop_table("programmes")
    op.drop_index(op.f("ix_mail_outbox_status_next_at_ms"), table_name="mail_outbox")
    op.drop_table("mail_outbox")
