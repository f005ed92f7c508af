"""payouts: the partners' ledger, payout runs, their lines and the entries each line locks; a
merchant's hold period, minimum, schedule and payer details; a partner's payout details and
group; partner groups and their rates per campaign; the rule that set a conversion's commission

``ledger_entries`` and ``payout_items`` are append-only (docs/payouts.md): triggers refuse an
UPDATE or a DELETE of their rows. The ledger starts with what approved conversions earned
before it. On SQLite its ``amount_minor`` and the lines' carry the ``typeof(...) = 'integer'``
CHECK of migration 0009. ``payout_items`` is keyed by the ledger entry, so an entry is locked by
one payout line at most.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MERCHANT_COLUMNS = (
    "payout_minimum_minor",
    "hold_days",
    "payout_schedule",
    "legal_name",
    "iban",
    "bic",
)
PARTNER_COLUMNS = (
    "payout_method",
    "iban",
    "bic",
    "account_holder",
    "paypal_email",
    "payout_note",
)


def _integer_money(table: str) -> list[sa.CheckConstraint]:
    if op.get_bind().dialect.name != "sqlite":
        return []
    check = sa.CheckConstraint(
        "typeof(amount_minor) = 'integer'", name=op.f(f"ck_{table}_amount_minor_integer")
    )
    return [check]


def upgrade() -> None:
    op.create_table(
        "partner_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partner_groups")),
        sa.UniqueConstraint("name", name=op.f("uq_partner_groups_name")),
    )
    op.create_table(
        "group_rates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("commission_bps", sa.Integer(), nullable=False),
        sa.Column("commission_flat_minor", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["partner_groups.id"], name=op.f("fk_group_rates_group_id_partner_groups")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_group_rates_campaign_id_campaigns")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_group_rates")),
        sa.UniqueConstraint(
            "group_id", "campaign_id", name=op.f("uq_group_rates_group_id_campaign_id")
        ),
    )
    op.create_index(op.f("ix_group_rates_campaign_id"), "group_rates", ["campaign_id"])
    with op.batch_alter_table("conversions") as batch:
        batch.add_column(
            sa.Column("commission_rule", sa.String(length=16), server_default="", nullable=False)
        )
    with op.batch_alter_table("merchants") as batch:
        batch.add_column(
            sa.Column("payout_minimum_minor", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("hold_days", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(
            sa.Column("payout_schedule", sa.String(length=16), server_default="", nullable=False)
        )
        batch.add_column(sa.Column("legal_name", sa.String(length=70), nullable=True))
        batch.add_column(sa.Column("iban", sa.String(length=34), nullable=True))
        batch.add_column(sa.Column("bic", sa.String(length=11), nullable=True))
    with op.batch_alter_table("partners") as batch:
        batch.add_column(sa.Column("payout_method", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("iban", sa.String(length=34), nullable=True))
        batch.add_column(sa.Column("bic", sa.String(length=11), nullable=True))
        batch.add_column(sa.Column("account_holder", sa.String(length=70), nullable=True))
        batch.add_column(sa.Column("paypal_email", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("payout_note", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("group_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_partners_group_id_partner_groups"), "partner_groups", ["group_id"], ["id"]
        )
        batch.create_index(op.f("ix_partners_group_id"), ["group_id"])
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("conversion_id", sa.Integer(), nullable=True),
        sa.Column("payout_line_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=200), server_default="", nullable=False),
        sa.Column("reason", sa.String(length=500), server_default="", nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        *_integer_money("ledger_entries"),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_ledger_entries_partner_id_partners")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_ledger_entries_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    op.create_index(
        op.f("ix_ledger_entries_partner_id_currency_at_ms"),
        "ledger_entries",
        ["partner_id", "currency", "at_ms"],
    )
    op.create_index(op.f("ix_ledger_entries_conversion_id"), "ledger_entries", ["conversion_id"])
    _append_only("ledger_entries")
    # What approved conversions earned before the ledger: booked as of the sale, so balances
    # and the ledger's sum agree from the start (record earlier payments as adjustments).
    op.execute(
        "INSERT INTO ledger_entries (partner_id, merchant_id, currency, amount_minor, kind,"
        " conversion_id, actor, reason, at_ms) SELECT partner_id, merchant_id, currency,"
        " commission_minor, 'earned', id, 'migration', 'approved before the ledger', at_ms"
        " FROM conversions WHERE status = 'approved' AND partner_id IS NOT NULL"
        " AND commission_minor <> 0 ORDER BY id"
    )
    op.create_table(
        "payout_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("confirmed_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_payout_runs_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_runs")),
        sa.UniqueConstraint(
            "merchant_id", "period", name=op.f("uq_payout_runs_merchant_id_period")
        ),
    )
    op.create_table(
        "payout_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=140), nullable=True),
        sa.Column("paid_on", sa.String(length=10), nullable=True),
        sa.Column("reason", sa.String(length=500), server_default="", nullable=False),
        sa.Column("changed_ms", sa.BigInteger(), nullable=False),
        *_integer_money("payout_lines"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["payout_runs.id"], name=op.f("fk_payout_lines_run_id_payout_runs")
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_payout_lines_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_lines")),
        sa.UniqueConstraint(
            "run_id",
            "partner_id",
            "currency",
            name=op.f("uq_payout_lines_run_id_partner_id_currency"),
        ),
    )
    op.create_index(op.f("ix_payout_lines_partner_id"), "payout_lines", ["partner_id"])
    op.create_table(
        "payout_items",
        sa.Column("entry_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("line_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["ledger_entries.id"],
            name=op.f("fk_payout_items_entry_id_ledger_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["line_id"], ["payout_lines.id"], name=op.f("fk_payout_items_line_id_payout_lines")
        ),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_payout_items")),
    )
    op.create_index(op.f("ix_payout_items_line_id"), "payout_items", ["line_id"])
    _append_only("payout_items")


def _append_only(table: str) -> None:
    """The database itself refuses to change or delete a row of ``table`` (dropping the table
    drops its triggers)."""
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table}"
                f" BEGIN SELECT RAISE(ABORT, '{table} rows are append-only'); END"
            )
        return
    op.execute(
        f"CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$ BEGIN RAISE EXCEPTION '{table} rows are append-only'; END $$"
    )
    op.execute(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
        f" FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
    )


def _drop_append_only(table: str) -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
        op.execute(f"DROP FUNCTION {table}_append_only()")


def downgrade() -> None:
    _drop_append_only("payout_items")
    _drop_append_only("ledger_entries")
    op.drop_index(op.f("ix_payout_items_line_id"), table_name="payout_items")
    op.drop_table("payout_items")
    op.drop_index(op.f("ix_payout_lines_partner_id"), table_name="payout_lines")
    op.drop_table("payout_lines")
    op.drop_table("payout_runs")
    op.drop_index(op.f("ix_ledger_entries_conversion_id"), table_name="ledger_entries")
    op.drop_index(op.f("ix_ledger_entries_partner_id_currency_at_ms"), table_name="ledger_entries")
    op.drop_table("ledger_entries")
    with op.batch_alter_table("partners") as batch:
        batch.drop_index(op.f("ix_partners_group_id"))
        batch.drop_constraint(op.f("fk_partners_group_id_partner_groups"), type_="foreignkey")
        batch.drop_column("group_id")
        for column in PARTNER_COLUMNS:
            batch.drop_column(column)
    with op.batch_alter_table("merchants") as batch:
        for column in MERCHANT_COLUMNS:
            batch.drop_column(column)
    with op.batch_alter_table("conversions") as batch:
        batch.drop_column("commission_rule")
    op.drop_index(op.f("ix_group_rates_campaign_id"), table_name="group_rates")
    op.drop_table("group_rates")
    op.drop_table("partner_groups")
