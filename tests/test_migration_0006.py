"""Migration 0006 on a database that already has users: each gets its own session epoch, and
SQLite gives no id out twice from then on, not even the highest one just deleted."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from backend.storage.db.engine import Database
from backend.storage.db.migrate import upgrade

OLD_USER = text(
    "INSERT INTO users (email, password_hash, role, created_at)"
    " VALUES (:email, '-', 'admin', '2026-11-24 00:00:00')"
)
NEW_USER = text(
    "INSERT INTO users (email, password_hash, role, created_at, session_epoch)"
    " VALUES (:email, '-', 'admin', '2026-11-24 00:00:00', :email)"
)


async def test_existing_users_get_epochs_and_ids_are_never_reused(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    database = Database.connect(url)
    await upgrade(database, url, "0005")
    async with database.writing() as connection:
        for email in ("a@example.com", "b@example.com"):
            await connection.execute(OLD_USER, {"email": email})
    await upgrade(database, url)
    async with database.writing() as connection:
        epochs = (await connection.execute(text("SELECT session_epoch FROM users"))).scalars()
        assert len(set(epochs)) == 2
        await connection.execute(NEW_USER, {"email": "c@example.com"})
        await connection.execute(text("DELETE FROM users WHERE email = 'c@example.com'"))
        await connection.execute(NEW_USER, {"email": "d@example.com"})
        ids = (await connection.execute(text("SELECT email, id FROM users ORDER BY id"))).all()
    await database.dispose()
    assert [tuple(row) for row in ids] == [
        ("a@example.com", 1),
        ("b@example.com", 2),
        ("d@example.com", 4),
    ]
