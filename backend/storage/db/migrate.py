"""Alembic migrations, run programmatically by ``clicktrail db upgrade`` and ``clicktrail run``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from backend.storage.db.engine import Database

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade(database: Database, url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision`` on the writer connection."""

    def run(connection: Connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with database.write_engine.begin() as connection:
        await connection.run_sync(run)
