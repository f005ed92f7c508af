"""COPY on PostgreSQL fails the way the worker's retry rules expect: an outage is retried, data
the database refuses is dead-lettered, as for SQLAlchemy's own statements."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.util import await_only

from backend.storage.db.bulk_copy import copy_rows
from backend.storage.db.engine import Database
from backend.storage.db.models import Click
from backend.tooling.bench.worker_bench import driver_url
from backend.worker.batch import CLICK_COLUMNS
from backend.worker.consumer import StreamConsumer
from backend.worker.retry import is_deterministic, is_transient
from backend.worker.steps.write import write_batch
from tests.support import Programme
from tests.test_delivery import clicks_on


@pytest.fixture
def postgres(database: Database) -> Database:
    if database.dialect != "postgresql":
        pytest.skip("COPY is PostgreSQL's")
    return database


async def stored_clicks(database: Database) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Click)) or 0)


async def test_a_value_the_column_refuses_fails_the_copy_for_good(
    postgres: Database, programme: Programme, consumer: StreamConsumer
) -> None:
    prepared = await consumer.pipeline.prepare(clicks_on(programme, 20))
    country = CLICK_COLUMNS.index("country")
    row = prepared.clicks[7]
    prepared.clicks[7] = (*row[:country], "XYZ", *row[country + 1 :])  # two letters at most

    with pytest.raises(DBAPIError) as refused:
        await write_batch(postgres, prepared)

    assert is_deterministic(refused.value)
    assert not is_transient(refused.value)
    assert await stored_clicks(postgres) == 0


async def test_a_copy_on_a_connection_the_server_ended_is_retried(
    postgres: Database, programme: Programme, consumer: StreamConsumer, database_url: str
) -> None:
    prepared = await consumer.pipeline.prepare(clicks_on(programme, 20))

    async def end_backend(pid: int) -> None:
        other = await asyncpg.connect(driver_url(database_url))
        try:
            await other.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await other.close()

    def copy_after_the_end(connection: Connection) -> None:
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        await_only(end_backend(pid))
        copy_rows(connection, "clicks", CLICK_COLUMNS, prepared.clicks)

    with pytest.raises(DBAPIError) as ended:
        await postgres.run_write(copy_after_the_end)

    assert is_transient(ended.value)
    assert (await write_batch(postgres, prepared)).clicks == 20  # a new connection writes it
