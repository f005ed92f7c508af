"""Async engines for SQLite (default) and PostgreSQL.

SQLite allows one writer at a time, so writers open their transactions with ``BEGIN IMMEDIATE``
(they queue on ``busy_timeout`` instead of failing on a lock upgrade) while readers keep
deferred transactions and, under WAL, never block the writer. On PostgreSQL both roles share
one engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

BUSY_TIMEOUT_MS = 10_000


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _sqlite_engine(url: str, *, immediate: bool) -> AsyncEngine:
    engine = create_async_engine(url, pool_size=1 if immediate else 5, max_overflow=0)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)

    return engine


@dataclass(frozen=True, slots=True)
class Database:
    """The reader and writer engines of one database."""

    read_engine: AsyncEngine
    write_engine: AsyncEngine

    @classmethod
    def connect(cls, url: str) -> Database:
        if is_sqlite(url):
            return cls(_sqlite_engine(url, immediate=False), _sqlite_engine(url, immediate=True))
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

    @asynccontextmanager
    async def session(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        engine = self.write_engine if write else self.read_engine
        async with AsyncSession(engine, expire_on_commit=False) as session:
            yield session

    async def dispose(self) -> None:
        await self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            await self.write_engine.dispose()
