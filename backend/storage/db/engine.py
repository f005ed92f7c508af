"""Async engines for SQLite (default) and PostgreSQL.

SQLite allows one writer at a time, so writers open their transactions with ``BEGIN IMMEDIATE``
(they queue on ``busy_timeout`` instead of failing on a lock upgrade) while readers keep
deferred transactions and, under WAL, never block the writer. On PostgreSQL both roles share
one engine.

The worker's statements (``Database.run_write``, ``Database.run_read``) take another way on
SQLite: aiosqlite hops to its thread and back for every call a statement makes (some thirty per
batch of the worker), each hop waking the event loop. Such work is one synchronous function on
the standard driver, run in a thread in one hop; the workers' writes take turns on a lock
beside the file first (``backend.storage.db.writer_lock``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from backend.core.private_files import FILE_MODE
from backend.storage.db.writer_lock import WriterLock

BUSY_TIMEOUT_MS = 10_000
P = ParamSpec("P")
R = TypeVar("R")


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _sqlite_engine(url: str, *, immediate: bool) -> AsyncEngine:
    engine = create_async_engine(url, pool_size=1 if immediate else 5, max_overflow=0)
    _configure_sqlite(engine.sync_engine, immediate=immediate)
    return engine


def _sqlite_bulk_engine(url: str, *, immediate: bool) -> Engine:  # no connection until used
    """The standard driver on the same file, for ``Database.run_write`` (``immediate``) and
    ``Database.run_read``."""
    engine = create_engine(
        make_url(url).set(drivername="sqlite+pysqlite"),
        pool_size=1,
        max_overflow=0,
        connect_args={"check_same_thread": False},  # used by one thread at a time
    )
    _configure_sqlite(engine, immediate=immediate)
    return engine


def _configure_sqlite(engine: Engine, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA secure_delete=ON")  # deleted rows are zeroed, not left in free space
        cursor.close()

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)


def _create_private(path: Path) -> None:
    """SQLite creates a missing database file under the process's umask, and its write-ahead
    log and the log's index with the file's mode: create it owner-only first (empty, which
    SQLite takes for a new database)."""
    with suppress(FileExistsError, FileNotFoundError):  # there already, or no directory for it
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE))


def _in_transaction(
    engine: Engine,
    lock: WriterLock,
    work: Callable[Concatenate[Connection, P], R],
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    with lock.held(), engine.begin() as connection:
        return work(connection, *args, **kwargs)


def _connected(
    engine: Engine, work: Callable[Concatenate[Connection, P], R], *args: P.args, **kwargs: P.kwargs
) -> R:
    with engine.connect() as connection:
        return work(connection, *args, **kwargs)


def _truncate_wal(engine: Engine) -> bool:
    """Outside any transaction (a checkpoint cannot run in one): the driver's own connection."""
    connection = engine.raw_connection()
    try:
        busy, _, _ = connection.driver_connection.execute(  # type: ignore[union-attr]
            "PRAGMA wal_checkpoint(TRUNCATE)"
        ).fetchone()
    finally:
        connection.close()
    return not busy


@dataclass(frozen=True, slots=True)
class Database:
    """The reader and writer engines of one database."""

    read_engine: AsyncEngine
    write_engine: AsyncEngine
    bulk_engine: Engine | None = None  # SQLite: the standard driver, for ``run_write``
    bulk_read_engine: Engine | None = None  # and for ``run_read``
    writer_lock: WriterLock | None = None  # SQLite: ``run_write``'s turn among processes
    _bulk_turn: asyncio.Lock = field(default_factory=asyncio.Lock, compare=False)
    _bulk_read_turn: asyncio.Lock = field(default_factory=asyncio.Lock, compare=False)

    @classmethod
    def connect(cls, url: str) -> Database:
        if is_sqlite(url):
            _create_private(Path(make_url(url).database or ""))
            return cls(
                _sqlite_engine(url, immediate=False),
                _sqlite_engine(url, immediate=True),
                _sqlite_bulk_engine(url, immediate=True),
                _sqlite_bulk_engine(url, immediate=False),
                WriterLock.beside(Path(make_url(url).database or "")),
            )
        engine = create_async_engine(url, pool_size=10, max_overflow=5, pool_pre_ping=True)
        return cls(engine, engine)

    @property
    def dialect(self) -> str:
        return self.write_engine.dialect.name

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction (committed on exit, rolled back on error)."""
        async with self.write_engine.begin() as connection:
            yield connection

    async def run_write(
        self,
        work: Callable[Concatenate[Connection, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """``work(connection, *args, **kwargs)`` in one write transaction, committed when it
        returns: synchronous Core code, in one thread hop on SQLite (see the module docstring)."""
        engine, lock = self.bulk_engine, self.writer_lock
        if engine is None or lock is None:
            async with self.write_engine.begin() as connection:
                return await connection.run_sync(work, *args, **kwargs)
        async with self._bulk_turn:  # one bulk write at a time: its pool holds one connection
            return await asyncio.to_thread(
                partial(_in_transaction, engine, lock, work, *args, **kwargs)
            )

    async def run_read(
        self,
        work: Callable[Concatenate[Connection, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """``work(connection, *args, **kwargs)`` on a reading connection: synchronous Core code,
        in one thread hop on SQLite (see the module docstring)."""
        engine = self.bulk_read_engine
        if engine is None:
            async with self.read_engine.connect() as connection:
                return await connection.run_sync(work, *args, **kwargs)
        async with self._bulk_read_turn:  # its pool holds one connection
            return await asyncio.to_thread(partial(_connected, engine, work, *args, **kwargs))

    async def truncate_wal(self) -> bool:
        """SQLite: copy the write-ahead log into the database file and empty it, so that what was
        deleted (zeroed in the file by ``secure_delete``) is not left in the log's older pages.
        Waits for readers up to the busy timeout; False if they kept it from finishing. Nothing
        to do on PostgreSQL."""
        engine = self.bulk_engine
        if engine is None:
            return True
        async with self._bulk_turn:
            return await asyncio.to_thread(_truncate_wal, engine)

    @asynccontextmanager
    async def session(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        engine = self.write_engine if write else self.read_engine
        async with AsyncSession(engine, expire_on_commit=False) as session:
            yield session

    async def dispose(self) -> None:
        for engine in (self.bulk_engine, self.bulk_read_engine):
            if engine is not None:
                engine.dispose()
        if self.writer_lock is not None:
            self.writer_lock.close()
        await self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            await self.write_engine.dispose()
