"""Files under var/ are the owner's only: the database (and its write-ahead log and index), the
embedded Redis's directory and append-only file, the spool, the secret key and the writers'
lock file, whatever the umask of the process that creates them (here a permissive one)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from backend.core.settings import load_settings
from backend.storage.db.engine import Database
from backend.storage.redis_client import connect
from backend.storage.redis_server import EmbeddedRedis
from backend.storage.streams.spool import Spool


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def modes(directory: Path) -> dict[str, int]:
    """The permission bits of ``directory`` and of everything under it, by relative path."""
    found = {".": stat.S_IMODE(directory.stat().st_mode)}
    for path in directory.rglob("*"):
        found[str(path.relative_to(directory))] = stat.S_IMODE(path.stat().st_mode)
    return found


def test_development_secret_and_its_directory(tmp_path: Path) -> None:
    var = tmp_path / "var"
    load_settings({"CLICKTRAIL_VAR_DIR": str(var)})
    assert modes(var) == {".": 0o700, "secret_key": 0o600}


async def test_sqlite_file_its_log_and_the_writers_lock(tmp_path: Path) -> None:
    database = Database.connect(f"sqlite+aiosqlite:///{tmp_path / 'clicktrail.db'}")
    try:
        async with database.writing() as connection:
            await connection.execute(text("CREATE TABLE t (x)"))
        await database.run_write(lambda connection: connection.exec_driver_sql("SELECT 1"))
        found = modes(tmp_path)
    finally:
        await database.dispose()
    assert found == {
        ".": found["."],  # pytest's own
        "clicktrail.db": 0o600,
        "clicktrail.db-wal": 0o600,
        "clicktrail.db-shm": 0o600,
        "clicktrail.db.writer-lock": 0o600,
    }


async def test_embedded_redis_directory_and_append_only_file(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "var").start()
    try:
        redis = connect(server.url)
        await redis.set("ct:session:x", "secret")
        await redis.aclose()
        found = modes(tmp_path / "var")
    finally:
        server.stop()
    assert found.pop(".") == 0o700
    assert {"appendonly.aof", "redis.log"} <= found.keys()
    assert {name: mode & 0o077 for name, mode in found.items()} == dict.fromkeys(found, 0)


def test_spool_directory_and_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "var" / "spool")
    spool.append([b"event"])
    assert modes(tmp_path / "var" / "spool") == {".": 0o700, spool.active.name: 0o600}
