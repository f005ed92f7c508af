"""stores and renewals: conversion sources of kind stripe or shopify, the customer of a
conversion (a keyed hash) and the partner each customer is bound to, campaigns' renewal rules,
and the store events that created or changed a conversion

``conversion_sources.kind``: "network" for the sources there are (fields mapped from a
postback), "stripe" or "shopify" for a store's webhooks, verified with ``signing_secret``.
``conversions.customer_hash``: HMAC of the merchant's customer reference with the server's
secret, never the reference; ``renewal_rule``: for a renewal, the rule that priced it.
``customer_bindings``: one per merchant and customer, the first attributed conversion's partner.
``campaigns.renewal_*``: whether renewals are paid ("none", "months", "lifetime"), for how many
months, at which rate (NULL: the campaign's). ``store_events``: unique per source and event id.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conversion_sources") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=16), server_default="network", nullable=False)
        )
        batch.add_column(sa.Column("signing_secret", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("shop_domain", sa.String(length=255), nullable=True))
    with op.batch_alter_table("conversions") as batch:
        batch.add_column(sa.Column("customer_hash", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("renewal_rule", sa.String(length=64), server_default="", nullable=False)
        )
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(
            sa.Column("renewal_mode", sa.String(length=16), server_default="none", nullable=False)
        )
        batch.add_column(sa.Column("renewal_months", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("renewal_bps", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("renewal_flat_minor", sa.BigInteger(), nullable=True))
    op.create_table(
        "customer_bindings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("customer_hash", sa.String(length=64), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("conversion_id", sa.Integer(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_bindings")),
        sa.UniqueConstraint(
            "merchant_id",
            "customer_hash",
            name=op.f("uq_customer_bindings_merchant_id_customer_hash"),
        ),
    )
    op.create_index(op.f("ix_customer_bindings_partner_id"), "customer_bindings", ["partner_id"])
    op.create_table(
        "store_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("event_key", sa.String(length=128), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("conversion_id", sa.Integer(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_events")),
        sa.UniqueConstraint(
            "source_id", "event_key", name=op.f("uq_store_events_source_id_event_key")
        ),
    )
    op.create_index(op.f("ix_store_events_conversion_id"), "store_events", ["conversion_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_store_events_conversion_id"), table_name="store_events")
    op.drop_table("store_events")
    op.drop_index(op.f("ix_customer_bindings_partner_id"), table_name="customer_bindings")
    op.drop_table("customer_bindings")
    with op.batch_alter_table("campaigns") as batch:
        for column in ("renewal_flat_minor", "renewal_bps", "renewal_months", "renewal_mode"):
            batch.drop_column(column)
    with op.batch_alter_table("conversions") as batch:
        batch.drop_column("renewal_rule")
        batch.drop_column("customer_hash")
    with op.batch_alter_table("conversion_sources") as batch:
        batch.drop_column("shop_domain")
        batch.drop_column("signing_secret")
        batch.drop_column("kind")
