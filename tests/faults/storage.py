"""Storage faults under the database: writes blocked by a lock, and a full disk.

SQLite and PostgreSQL fail differently, so each fault has a form per database:
- blocked writes: a held ``BEGIN EXCLUSIVE`` on SQLite; on PostgreSQL (which a test cannot
  restart without disturbing others on the server) the event tables locked and the other
  connections to the database killed twice with ``pg_terminate_backend``, as a restart would;
- a full disk: a small tmpfs filled up. SQLite's file lives on it; PostgreSQL's tables (of
  the test database only) are moved to a tablespace on it (both need root, which CI has).
"""

from __future__ import annotations

import asyncio
import errno
import os
import pwd
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from backend.storage.db.engine import Database, is_sqlite

EVENT_TABLES = ("clicks", "impressions", "conversions", "rejected_events", "stats_hourly")
# Room for the database and a write-ahead log at its size before SQLite checkpoints it (1,000
# pages of 4 KiB): at 2 MiB the log of the drain itself filled the disk once space was back.
DISK_SIZE = "8m"


def sqlite_path(url: str) -> Path:
    return Path(url.split(":///", 1)[1])


@dataclass(frozen=True)
class Hold:
    """A fault that lasts until ``ends`` (a ``time.monotonic`` instant)."""

    ends: float

    def done(self) -> bool:
        return time.monotonic() >= self.ends


@asynccontextmanager
async def writes_blocked(database: Database, url: str, seconds: float) -> AsyncIterator[Hold]:
    """No write can commit for ``seconds`` after entering (and until the block is left)."""
    hold = Hold(time.monotonic() + seconds)
    if is_sqlite(url):
        exclusive = sqlite3.connect(sqlite_path(url), isolation_level=None)
        exclusive.execute("BEGIN EXCLUSIVE")
        try:
            yield hold
        finally:
            exclusive.rollback()
            exclusive.close()
        return
    async with database.write_engine.connect() as holder:
        me = await holder.scalar(text("SELECT pg_backend_pid()"))
        await holder.execute(text(f"LOCK TABLE {', '.join(EVENT_TABLES)} IN EXCLUSIVE MODE"))
        killer = asyncio.create_task(_terminate_others_twice(database, int(me or 0), seconds))
        try:
            yield hold
        finally:
            await killer
            await holder.rollback()


async def _terminate_others_twice(database: Database, holder_pid: int, seconds: float) -> None:
    for _ in range(2):
        await asyncio.sleep(seconds / 3)
        async with database.write_engine.connect() as connection:
            await connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND backend_type = 'client backend' "
                    "AND pid NOT IN (pg_backend_pid(), :holder)"
                ),
                {"holder": holder_pid},
            )


class SmallDisk:
    """A tmpfs of ``DISK_SIZE`` mounted at ``path``; ``full()`` fills it for a while."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mount(self) -> SmallDisk:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0755", "tmpfs", self.path],
            check=True,
        )
        return self

    def unmount(self) -> None:
        subprocess.run(["umount", self.path], check=True)
        self.path.rmdir()

    @contextmanager
    def full(self) -> Iterator[str]:
        """Fill every free byte while the block runs; yield what was filled."""
        filler = self.path / "filler"
        written = 0
        descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for chunk in (1 << 16, 1 << 12, 1 << 9):
                try:
                    while True:
                        written += os.write(descriptor, b"\0" * chunk)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
        finally:
            os.close(descriptor)
        try:
            yield f"tmpfs {DISK_SIZE}, {written // 1024} KiB filled"
        finally:
            filler.unlink()


@asynccontextmanager
async def database_on_small_disk(url: str, root: Path) -> AsyncIterator[tuple[str, SmallDisk]]:
    """The database ``url`` moved onto a ``SmallDisk``: its new URL and the disk."""
    if is_sqlite(url):
        disk = SmallDisk(root / "small-disk").mount()
        try:
            moved = disk.path / "clicktrail.db"
            shutil.copy(sqlite_path(url), moved)
            yield f"sqlite+aiosqlite:///{moved}", disk
        finally:
            disk.unmount()
        return
    # The server runs as postgres and must reach the directory: not under pytest's own.
    disk = SmallDisk(Path("/tmp") / f"clicktrail-faults-{uuid.uuid4().hex[:12]}").mount()
    postgres = pwd.getpwnam("postgres")
    os.chown(disk.path, postgres.pw_uid, postgres.pw_gid)
    tablespace = disk.path.name.replace("-", "_")
    database = Database.connect(url)
    try:
        async with database.write_engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text(f"CREATE TABLESPACE {tablespace} LOCATION '{disk.path}'"))
            await autocommit.execute(
                text(f"ALTER TABLE ALL IN TABLESPACE pg_default SET TABLESPACE {tablespace}")
            )
        yield url, disk
    finally:
        async with database.write_engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(
                text(f"ALTER TABLE ALL IN TABLESPACE {tablespace} SET TABLESPACE pg_default")
            )
            await autocommit.execute(text(f"DROP TABLESPACE {tablespace}"))
        await database.dispose()
        disk.unmount()


async def integrity_check(database: Database) -> str:
    """SQLite's own check; on PostgreSQL amcheck over every index of the event tables."""
    async with database.write_engine.connect() as connection:
        if database.dialect == "sqlite":
            return str(await connection.scalar(text("PRAGMA integrity_check")))
        await connection.execute(text("CREATE EXTENSION IF NOT EXISTS amcheck"))
        indexes = await connection.scalars(
            text(
                # leaf indexes only (amcheck reads no partitioned index), partitions included
                "SELECT i.indexrelid::regclass::text FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid AND c.relkind = 'i' "
                "WHERE i.indrelid::regclass::text = ANY(:tables) OR i.indrelid IN "
                "(SELECT inhrelid FROM pg_inherits WHERE inhparent::regclass::text = ANY(:tables))"
            ),
            {"tables": list(EVENT_TABLES)},
        )
        for index in indexes.all():
            await connection.execute(
                text("SELECT bt_index_check(CAST(:i AS regclass), true)"), {"i": index}
            )
        await connection.commit()
    return "ok"
