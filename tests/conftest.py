"""Fixtures: a real Redis server (the embedded binary), a real database file (or PostgreSQL when
``CLICKTRAIL_TEST_POSTGRES_URL`` is set: every database test then runs on both), the app and
the worker's consumer. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import text

from backend.core.clock import now_ms
from backend.core.settings import Settings
from backend.storage.db.engine import Database
from backend.storage.db.migrate import upgrade
from backend.storage.db.models import Base
from backend.storage.db.partitions import ensure_partitions
from backend.storage.redis_client import connect
from backend.storage.redis_server import EmbeddedRedis
from backend.web.app import create_app
from backend.worker.consumer import StreamConsumer
from backend.worker.main import build_consumer
from tests.support import SECRET, Programme, make_programme

POSTGRES_URL = os.environ.get("CLICKTRAIL_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite", *(["postgresql"] if POSTGRES_URL else [])]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database file, copied for each test (migrating once keeps tests fast)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    url = f"sqlite+aiosqlite:///{path}"

    async def migrate() -> None:
        database = Database.connect(url)
        await upgrade(database, url)
        await database.dispose()

    asyncio.run(migrate())
    return path


@pytest.fixture(scope="session")
def postgres_migrated() -> str:
    """The PostgreSQL test database, emptied and migrated once per session."""

    async def reset() -> None:
        database = Database.connect(POSTGRES_URL)
        async with database.writing() as connection:
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
        await upgrade(database, POSTGRES_URL)
        await database.dispose()

    asyncio.run(reset())
    return POSTGRES_URL


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "clicktrail.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url: str = request.getfixturevalue("postgres_migrated")

    async def truncate() -> None:
        """The migrated state: no rows, and this month's partitions and the next ones (a
        retention test far in the future drops them)."""
        database = Database.connect(url)
        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
        async with database.writing() as connection:
            await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            await connection.run_sync(ensure_partitions, now_ms())
        await database.dispose()

    # Before the test as well as after: a row that lands once the last test's teardown has
    # run (seen once: a delivery attempt) must not count in this test's tables.
    asyncio.run(truncate())
    yield url
    asyncio.run(truncate())


@pytest.fixture
def settings(tmp_path: Path, database_url: str, redis_server: EmbeddedRedis) -> Settings:
    return Settings(
        var_dir=tmp_path / "var",
        database_url=database_url,
        redis_url=redis_server.url,
        secret_key=SECRET,
        public_url="http://testserver.local",
        batch_max_wait_ms=0,
        access_log=True,  # exercised by every test; the privacy test reads it
    )


@pytest.fixture
async def redis(redis_server: EmbeddedRedis) -> AsyncIterator[Redis]:
    """The tests' Redis (``settings.redis_url``), emptied; it needs no database."""
    client = connect(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = Database.connect(settings.database_url)
    yield db
    await db.dispose()


@pytest.fixture
async def consumer(
    settings: Settings, database: Database, redis: Redis
) -> AsyncIterator[StreamConsumer]:
    worker = build_consumer(settings, database, settings.redis_url)
    await worker.ensure_group()
    yield worker
    await worker.close()


@pytest.fixture
async def client(settings: Settings, redis: Redis) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(settings)) as test_client:
        test_client.follow_redirects = False
        yield test_client


@pytest.fixture
async def programme(client: AsyncTestClient[Any], database: Database) -> Programme:
    return await make_programme(client, database)
