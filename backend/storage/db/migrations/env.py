"""Alembic environment: migrations run on a connection handed in by
``backend.storage.db.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from backend.storage.db.models import Base

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `clicktrail db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
