"""click dimensions: the visitor's operating system and country on clicks; utm_campaign,
utm_term and utm_content (already on clicks) reportable; the dimension rollup gains the five

``clicks.os``: ua-parser's family of the operating system; ``clicks.country``: ISO 3166-1
alpha-2 from the address at the edge ("" unknown; clicks stored before have ""). The hours the
rollup has folded already get rows for the new dimensions from the raw rows still kept (hour
rows, then day rows of the whole days), so a breakdown by them covers the past as far as the
raw clicks reach; the fold job folds them from here on like the others.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = {
    "os": "os",
    "country": "country",
    "utm_campaign": "utm_campaign",
    "utm_term": "utm_term",
    "utm_content": "utm_content",
}
HOUR, DAY = 3_600_000, 86_400_000
COLUMNS = (
    "hour_ms, span_hours, dimension, value, partner_id, currency, clicks, unique_clicks,"
    " bot_clicks, flagged_clicks, conversions, revenue_minor, commission_minor"
)


def upgrade() -> None:
    op.add_column("clicks", sa.Column("os", sa.String(32), nullable=False, server_default=""))
    op.add_column("clicks", sa.Column("country", sa.String(2), nullable=False, server_default=""))
    bind = op.get_bind()
    watermark = bind.scalar(
        sa.text("SELECT hour_ms FROM rollup_watermarks WHERE name = 'dimension_hourly'")
    )
    if watermark is None:
        return  # nothing folded yet: the fold job folds every dimension
    for name, column in NEW.items():
        bind.execute(
            sa.text(
                f"INSERT INTO dimension_hourly ({COLUMNS})"  # noqa: S608 (names are ours)
                f" SELECT (at_ms / {HOUR}) * {HOUR}, 1, :name, {column}, partner_id, '',"
                " SUM(CASE WHEN flags = '' THEN 1 ELSE 0 END),"
                " SUM(CASE WHEN is_unique THEN 1 ELSE 0 END),"
                " SUM(CASE WHEN is_bot THEN 1 ELSE 0 END),"
                " SUM(CASE WHEN flags <> '' AND NOT is_bot THEN 1 ELSE 0 END), 0, 0, 0"
                f" FROM clicks WHERE at_ms < :watermark"
                f" GROUP BY (at_ms / {HOUR}) * {HOUR}, {column}, partner_id"
            ),
            {"name": name, "watermark": watermark},
        )
        bind.execute(
            sa.text(
                f"INSERT INTO dimension_hourly ({COLUMNS})"  # noqa: S608
                f" SELECT (v.at_ms / {HOUR}) * {HOUR}, 1, :name, COALESCE(c.{column}, ''),"
                " COALESCE(v.partner_id, 0), v.currency, 0, 0, 0, 0, COUNT(*),"
                " SUM(v.amount_minor), SUM(v.commission_minor)"
                " FROM conversions v LEFT JOIN clicks c ON c.click_id = v.click_id"
                " WHERE v.at_ms < :watermark"
                f" GROUP BY (v.at_ms / {HOUR}) * {HOUR}, COALESCE(c.{column}, ''),"
                " COALESCE(v.partner_id, 0), v.currency"
            ),
            {"name": name, "watermark": watermark},
        )
    bind.execute(
        sa.text(
            f"INSERT INTO dimension_hourly ({COLUMNS})"  # noqa: S608
            f" SELECT (hour_ms / {DAY}) * {DAY}, 24, dimension, value, partner_id, currency,"
            " SUM(clicks), SUM(unique_clicks), SUM(bot_clicks), SUM(flagged_clicks),"
            " SUM(conversions), SUM(revenue_minor), SUM(commission_minor)"
            " FROM dimension_hourly WHERE span_hours = 1 AND dimension IN :names"
            " AND hour_ms < :last_day"
            f" GROUP BY (hour_ms / {DAY}) * {DAY}, dimension, value, partner_id, currency"
        ).bindparams(sa.bindparam("names", expanding=True)),
        {"names": list(NEW), "last_day": watermark // DAY * DAY},
    )


def downgrade() -> None:
    op.execute(
        sa.text("DELETE FROM dimension_hourly WHERE dimension IN :names").bindparams(
            sa.bindparam("names", value=list(NEW), expanding=True)
        )
    )
    op.drop_column("clicks", "country")
    op.drop_column("clicks", "os")
