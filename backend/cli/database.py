"""The management commands' way into the database: the deployment's existing one, or a single
line saying where the command looked and which setting names another, with nothing created
(a SQLite URL would otherwise create an empty database wherever the command was typed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from backend.core.settings import Settings
from backend.storage.db.engine import Database


def sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite URL (None for another database)."""
    url = make_url(database_url)
    return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None


def require_database(settings: Settings) -> None:
    """Stop with one line when the SQLite database the settings name does not exist."""
    path = sqlite_file(settings.database_url)
    if path is not None and not path.exists():
        raise SystemExit(
            f"no Clicktrail database at {path.absolute()}: run this command in the directory "
            "where 'clicktrail run' keeps its var/, or set CLICKTRAIL_VAR_DIR or "
            "CLICKTRAIL_DATABASE_URL"
        )


@asynccontextmanager
async def existing_database(settings: Settings) -> AsyncIterator[Database]:
    """The deployment's database; an unreachable or unmigrated one ends the command in a line."""
    require_database(settings)
    database = Database.connect(settings.database_url)
    try:
        yield database
    except (SQLAlchemyError, OSError) as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        raise SystemExit(
            f"the database at {make_url(settings.database_url).render_as_string()} cannot be "
            f"used: {reason} (is it reachable, and migrated with 'clicktrail db upgrade'?)"
        ) from None
    finally:
        await database.dispose()
