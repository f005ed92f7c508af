"""coupons: partners' coupon codes per merchant; the coupon and the attribution reason of a
conversion; the merchant's choice between a click and a coupon; the hourly rollup keyed by
partner and campaign too

``coupons``: unique per merchant on ``code_key`` (the code upper-cased), so ``summer10`` and
``SUMMER10`` are one code. ``conversions.attribution``: "click", "cookie", "coupon" or "" (not
credited); stored conversions credited to a partner are marked "click" (the only way there was).
``merchants.coupon_over_click``: false, a click wins over another partner's coupon.
``stats_hourly``'s key gains ``partner_id`` and ``campaign_id``: a conversion no click is credited
with sits on link 0, and a coupon's conversions there belong to the coupon's partner and
campaign (a link's partner and campaign are its own, so its rows stay as they are).

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KEY = ["hour_ms", "merchant_id", "link_id", "currency"]
NEW_KEY = [*OLD_KEY, "partner_id", "campaign_id"]


def upgrade() -> None:
    op.create_table(
        "coupons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("code_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_coupons_merchant_id_merchants")
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_coupons_partner_id_partners")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_coupons_campaign_id_campaigns")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupons")),
        sa.UniqueConstraint(
            "merchant_id", "code_key", name=op.f("uq_coupons_merchant_id_code_key")
        ),
    )
    op.create_index(op.f("ix_coupons_partner_id"), "coupons", ["partner_id"])
    op.create_index(op.f("ix_coupons_campaign_id"), "coupons", ["campaign_id"])
    with op.batch_alter_table("merchants") as batch:
        batch.add_column(
            sa.Column("coupon_over_click", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("conversions") as batch:
        batch.add_column(sa.Column("coupon", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("attribution", sa.String(length=16), server_default="", nullable=False)
        )
    op.execute("UPDATE conversions SET attribution = 'click' WHERE link_id IS NOT NULL")
    _rekey_stats(NEW_KEY)


def downgrade() -> None:
    # Link 0's rows of one hour, merchant and currency become one again.
    op.execute(
        "CREATE TEMPORARY TABLE stats_link0 AS SELECT hour_ms, merchant_id, currency,"
        " SUM(clicks) AS clicks, SUM(unique_clicks) AS unique_clicks,"
        " SUM(bot_clicks) AS bot_clicks, SUM(flagged_clicks) AS flagged_clicks,"
        " SUM(impressions) AS impressions, SUM(conversions) AS conversions,"
        " SUM(revenue_minor) AS revenue_minor, SUM(commission_minor) AS commission_minor"
        " FROM stats_hourly WHERE link_id = 0 GROUP BY hour_ms, merchant_id, currency"
    )
    op.execute("DELETE FROM stats_hourly WHERE link_id = 0")
    op.execute(
        "INSERT INTO stats_hourly (hour_ms, merchant_id, link_id, currency, partner_id,"
        " campaign_id, clicks, unique_clicks, bot_clicks, flagged_clicks, impressions,"
        " conversions, revenue_minor, commission_minor) SELECT hour_ms, merchant_id, 0,"
        " currency, 0, 0, CAST(clicks AS BIGINT), CAST(unique_clicks AS BIGINT),"
        " CAST(bot_clicks AS BIGINT), CAST(flagged_clicks AS BIGINT),"
        " CAST(impressions AS BIGINT), CAST(conversions AS BIGINT),"
        " CAST(revenue_minor AS BIGINT), CAST(commission_minor AS BIGINT) FROM stats_link0"
    )
    op.execute("DROP TABLE stats_link0")
    _rekey_stats(OLD_KEY)
    with op.batch_alter_table("conversions") as batch:
        batch.drop_column("attribution")
        batch.drop_column("coupon")
    with op.batch_alter_table("merchants") as batch:
        batch.drop_column("coupon_over_click")
    op.drop_index(op.f("ix_coupons_campaign_id"), table_name="coupons")
    op.drop_index(op.f("ix_coupons_partner_id"), table_name="coupons")
    op.drop_table("coupons")


def _rekey_stats(columns: list[str]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot change a key in place: batch mode copies the table (with the CHECKs
        # of migration 0009) under the new key.
        with op.batch_alter_table("stats_hourly", recreate="always") as batch:
            batch.drop_constraint("pk_stats_hourly", type_="primary")
            batch.create_primary_key("pk_stats_hourly", columns)
        return
    op.drop_constraint("pk_stats_hourly", "stats_hourly", type_="primary")
    op.create_primary_key("pk_stats_hourly", "stats_hourly", columns)
