"""accounts: users get a session epoch, and SQLite never gives a user id out twice

Sessions carry their user's ``session_epoch`` and end when it changes; every existing user gets
a random one (sessions from before carry none, so they end: everyone signs in once more). On
SQLite the table is rebuilt with AUTOINCREMENT, so a deleted user's id is never the next user's;
PostgreSQL's sequence never gave one out twice.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

import secrets
from collections.abc import Sequence
from typing import Literal

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

USERS = sa.table("users", sa.column("id", sa.Integer), sa.column("session_epoch", sa.String))


def _rebuild_on_sqlite() -> Literal["always", "auto"]:
    return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("session_epoch", sa.String(32), nullable=True))
    connection = op.get_bind()
    for user_id in connection.scalars(sa.select(USERS.c.id)).all():
        connection.execute(
            USERS.update()
            .where(USERS.c.id == user_id)
            .values(session_epoch=secrets.token_urlsafe(16))
        )
    with op.batch_alter_table(
        "users", recreate=_rebuild_on_sqlite(), table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.alter_column("session_epoch", existing_type=sa.String(32), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("users", recreate=_rebuild_on_sqlite()) as batch:
        batch.drop_column("session_epoch")
