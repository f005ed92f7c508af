"""money bounds: a merchant's maximum order value; rollup money that can never turn into a float;
hours whose conversions a signed postback changed, to fold again

SQLite stores an integer sum that overflows 64 bits as a float without a word: a CHECK on the
money columns of ``stats_hourly`` turns that into an error instead (the worker then
dead-letters the conversion that would overflow). PostgreSQL refuses a ``bigint`` overflow by
itself.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = ("revenue_minor", "commission_minor")


def upgrade() -> None:
    with op.batch_alter_table("merchants") as batch:
        batch.add_column(sa.Column("max_order_minor", sa.BigInteger(), nullable=True))
    op.create_table(
        "rollup_repairs",
        sa.Column("hour_ms", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("hour_ms", name=op.f("pk_rollup_repairs")),
    )
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("stats_hourly") as batch:
            for column in MONEY:
                batch.create_check_constraint(
                    f"ck_stats_hourly_{column}_integer", f"typeof({column}) = 'integer'"
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("stats_hourly") as batch:
            for column in MONEY:
                batch.drop_constraint(f"ck_stats_hourly_{column}_integer", type_="check")
    op.drop_table("rollup_repairs")
    with op.batch_alter_table("merchants") as batch:
        batch.drop_column("max_order_minor")
