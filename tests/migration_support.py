"""What the migration tests share: a database of their own (a SQLite file, or a PostgreSQL
database beside the tests' one) and a step down to an earlier revision."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from backend.storage.db.engine import Database
from backend.storage.db.migrate import alembic_config
from tests.conftest import POSTGRES_URL


async def fresh_url(backend: str, tmp_path: Path, label: str) -> str:
    """The URL of an empty database for one migration test (``label`` names it on PostgreSQL)."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    url = make_url(POSTGRES_URL)
    name = f"{url.database}_{label}"
    server = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with server.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    await server.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


async def downgrade_to(database: Database, url: str, revision: str) -> None:
    """Run the migrations' downgrades down to ``revision``."""

    def down(connection: Connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with database.write_engine.begin() as connection:
        await connection.run_sync(down)
