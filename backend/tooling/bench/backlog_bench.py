"""The catch-up benchmark: a backlog of events waiting in the stream, then one worker drains it.

A worker that fell behind (stopped for a deployment, the database away) must catch up at its
usual rate with its memory bounded: it reads a batch ahead at most (``backend.worker.stream``),
whatever the stream holds. The events are built and XADDed in chunks of ``CHUNK_CLICKS``
clicks, so the benchmark's own process stays small too, then one worker process drains the
stream as in the worker benchmark; its peak resident memory and its rate are the figures, with
the peak and rate of a worker that drained ``SMALL_CLICKS`` clicks' events beside them (the same
worker without a backlog worth the name), and the rate of one more such small drain into the
tables the backlog left behind, its clicks following the backlog's as densely: the backlog's
rate lies between the two when waiting events cost the worker nothing, and what slows it is the
depth of the tables and of the quality windows, which live traffic that dense meets as well.
The backlog's clicks are in time order across its chunks, as a real backlog's are.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path

from backend.core.clock import now_ms
from backend.core.ids import ClickIdSigner
from backend.core.settings import Settings
from backend.storage.catalog import Catalog
from backend.storage.db.engine import Database
from backend.storage.redis_client import connect
from backend.storage.redis_server import EmbeddedRedis
from backend.tooling.bench.processes import run_settings
from backend.tooling.bench.programme import BenchProgramme
from backend.tooling.bench.worker_bench import (
    SPAN_MS,
    Drain,
    count_rows,
    drain,
    enqueue,
    make_events,
    new_database,
)
from backend.worker.main import spare_cpu

CHUNK_CLICKS = 50_000
SMALL_CLICKS = 20_000


@dataclass(frozen=True, slots=True)
class BacklogReport:
    database: str  # "sqlite" or "postgresql"
    events: int  # sent, clicks and conversions
    stream_bytes: int  # Redis's memory for the stream once filled
    enqueue_s: float
    drain: Drain
    small_drain: Drain  # a worker draining a small stream (``SMALL_CLICKS``) into new tables
    small_events: int
    deep_drain: Drain  # the same small stream drained into the tables the backlog filled
    rows_in_db: int  # after the backlog, before the deep small drain
    backlog: int  # entries left in the stream

    @property
    def rate(self) -> float:
        return self.events / self.drain.seconds

    @property
    def ok(self) -> bool:
        written = self.drain.written
        return (
            written.clicks + written.conversions == self.events == self.rows_in_db
            and self.backlog == 0
        )


async def _fill(
    settings: Settings,
    programme: BenchProgramme,
    clicks: int,
    seed: int,
    end_ms: int,
    span_ms: int,
    first_order: int = 0,
) -> tuple[int, int]:
    """XADD ``clicks`` clicks over the ``span_ms`` before ``end_ms`` and their conversions, a
    chunk at a time, each chunk's events after the last one's (a backlog is in time order),
    orders numbered from ``first_order``; the events and the orders sent."""
    database = Database.connect(settings.database_url)
    redis = connect(settings.redis_url)
    rng, sent, orders = random.Random(seed), 0, first_order
    try:
        catalog = Catalog(database, settings.attribution_window_days)
        signer = ClickIdSigner(settings.secret_key)
        for start in range(0, clicks, CHUNK_CLICKS):
            chunk = min(CHUNK_CLICKS, clicks - start)
            events, conversions = await make_events(
                catalog,
                programme,
                signer,
                chunk,
                rng,
                end_ms - span_ms * (clicks - start - chunk) // clicks,
                first_order=orders,
                span_ms=span_ms * chunk // clicks,
            )
            await enqueue(redis, settings.stream, events)
            sent, orders = sent + len(events), orders + conversions
        return sent, orders
    finally:
        await redis.aclose()
        await database.dispose()


async def _stream_state(settings: Settings) -> tuple[int, int]:
    """The stream's length in entries and Redis's memory for it in bytes."""
    redis = connect(settings.redis_url)
    try:
        length = int(await redis.xlen(settings.stream))
        used = int(await redis.memory_usage(settings.stream) or 0) if length else 0
        return length, used
    finally:
        await redis.aclose()


@dataclass(frozen=True, slots=True)
class _Drained:
    events: int
    stream_bytes: int
    enqueue_s: float
    drain: Drain
    rows: int  # stored once the stream was drained
    left: int  # entries left in the stream
    then: Drain | None  # ``then_clicks`` more clicks' events drained into the same tables


def _backlog_drained(
    workdir: Path, clicks: int, database_url: str | None, seed: int, then_clicks: int = 0
) -> _Drained:
    """Fill a new stream with ``clicks`` clicks' events, drain it with one worker, then (if
    ``then_clicks``) fill and drain ``then_clicks`` more into the same tables. Those come after
    the backlog's in time, as the traffic that follows a catch-up does: clicks placed among the
    stored ones would cost the indexes and the quality windows what live traffic never does."""
    workdir.mkdir(parents=True, exist_ok=True)
    url, programme = new_database(workdir / "worker.db", database_url)
    redis_server = EmbeddedRedis(workdir / "redis").start()
    try:
        settings = run_settings(workdir, url, redis_server.url)
        started = time.perf_counter()
        # The clicks after the backlog come as densely as the backlog's did: the quality
        # windows then hold as much for them as at the backlog's end.
        then_span_ms = SPAN_MS * then_clicks // clicks
        end_ms = now_ms()
        events, orders = asyncio.run(
            _fill(settings, programme, clicks, seed, end_ms - then_span_ms, SPAN_MS)
        )
        enqueue_s = time.perf_counter() - started
        _, stream_bytes = asyncio.run(_stream_state(settings))
        drained = asyncio.run(drain(settings, [spare_cpu(0)]))
        left, _ = asyncio.run(_stream_state(settings))
        rows = asyncio.run(count_rows(url, "clicks", "conversions"))
        then = None
        if then_clicks:
            asyncio.run(
                _fill(settings, programme, then_clicks, seed + 1, end_ms, then_span_ms, orders)
            )
            then = asyncio.run(drain(settings, [spare_cpu(0)]))
    finally:
        redis_server.stop()
    return _Drained(events, stream_bytes, enqueue_s, drained, rows, left, then)


def run_backlog_bench(
    workdir: Path,
    clicks: int,
    database_url: str | None = None,
    seed: int = 2024,
    small_clicks: int = SMALL_CLICKS,
) -> BacklogReport:
    """A worker draining a small stream (``small_clicks`` clicks), then one draining a backlog
    of ``clicks`` clicks, each with their conversions, on a new database and a new Redis, then
    a small stream again into the tables the backlog filled."""
    small = _backlog_drained(workdir / "small", small_clicks, database_url, seed)
    backlog = _backlog_drained(
        workdir / "backlog", clicks, database_url, seed, then_clicks=small_clicks
    )
    assert backlog.then is not None  # asked for
    return BacklogReport(
        database="sqlite" if database_url is None else "postgresql",
        events=backlog.events,
        stream_bytes=backlog.stream_bytes,
        enqueue_s=backlog.enqueue_s,
        drain=backlog.drain,
        small_drain=small.drain,
        small_events=small.events,
        deep_drain=backlog.then,
        rows_in_db=backlog.rows,
        backlog=backlog.left,
    )
