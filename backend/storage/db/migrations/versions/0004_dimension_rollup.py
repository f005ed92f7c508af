"""dimension_hourly and rollup_watermarks: breakdowns by click dimension without raw scans

A cron job folds closed hours of raw clicks and conversions into ``dimension_hourly`` and
records how far it got in ``rollup_watermarks``; reports read the rollup below the watermark
and raw rows above it. An index on conversions (status, at_ms) lets them subtract the few
conversions no longer counted without reading the others.

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTERS = (
    "clicks",
    "unique_clicks",
    "bot_clicks",
    "flagged_clicks",
    "conversions",
    "revenue_minor",
    "commission_minor",
)


def upgrade() -> None:
    op.create_table(
        "dimension_hourly",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("hour_ms", sa.BigInteger(), nullable=False),
        sa.Column("span_hours", sa.Integer(), nullable=False),
        sa.Column("dimension", sa.String(16), nullable=False),
        sa.Column("value", sa.String(2048), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _COUNTERS),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dimension_hourly")),
    )
    op.create_index(
        op.f("ix_dimension_hourly_dimension_span_hours_hour_ms"),
        "dimension_hourly",
        ["dimension", "span_hours", "hour_ms"],
    )
    op.create_index(
        op.f("ix_dimension_hourly_dimension_value_span_hours_hour_ms"),
        "dimension_hourly",
        ["dimension", "value", "span_hours", "hour_ms"],
    )
    # reports subtract the conversions no longer counted (rejected, reversed) from the rollup
    op.create_index(op.f("ix_conversions_status_at_ms"), "conversions", ["status", "at_ms"])
    op.create_table(
        "rollup_watermarks",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("hour_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rollup_watermarks")),
    )


def downgrade() -> None:
    op.drop_table("rollup_watermarks")
    op.drop_index("ix_conversions_status_at_ms", table_name="conversions")
    op.drop_index(
        "ix_dimension_hourly_dimension_value_span_hours_hour_ms", table_name="dimension_hourly"
    )
    op.drop_index("ix_dimension_hourly_dimension_span_hours_hour_ms", table_name="dimension_hourly")
    op.drop_table("dimension_hourly")
