"""The worker benchmark: stream to committed rows, against raw ``sqlite3.executemany`` on
SQLite and raw ``COPY`` (asyncpg's ``copy_records_to_table``) on PostgreSQL.

Clicks and about 2% conversions are built by the same edge functions the HTTP handlers use
(``build_click``, ``build_conversion``) from realistic visitors, XADDed to a fresh Redis stream
in entries of ``EVENTS_PER_ENTRY`` events as the web's group commit writes them, and drained by
the real consumer (``build_consumer``) into a migrated database, in worker processes of its
own as ``clicktrail worker`` runs it (one by default; several share the consumer group). The
baseline writes the very rows the worker wrote (from ``Pipeline.prepare``) into the same
schema, empty (a fresh copy on SQLite, with the same pragmas; the truncated tables on
PostgreSQL), one transaction per consumer batch, so the ratio is
the worker's own overhead: stream reads and acknowledgements, decoding, enrichment, SQLAlchemy
and the rollups.
"""

from __future__ import annotations

import asyncio
import ipaddress
import multiprocessing
import random
import resource
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier as BarrierType
from pathlib import Path

import asyncpg
from redis.asyncio import Redis
from sqlalchemy import make_url, text

from backend.core.clock import HOUR_MS, MINUTE_MS, now_ms
from backend.core.ids import ClickIdSigner
from backend.core.settings import Settings
from backend.domain.edge import build_click, build_conversion
from backend.domain.events import (
    ClickEvent,
    NetworkEvent,
    QueuedEvent,
    Source,
    Visitor,
    encode_event,
)
from backend.domain.visitor import describe_visitor
from backend.storage.catalog import Catalog, LinkInfo
from backend.storage.db.engine import Database
from backend.storage.redis_client import connect
from backend.storage.redis_server import EmbeddedRedis
from backend.storage.streams.entries import encode_entry
from backend.tooling.bench.processes import run_settings
from backend.tooling.bench.programme import (
    BenchProgramme,
    create_programme,
    create_programme_database,
    sqlite_url,
)
from backend.tooling.bench.traffic import browsers, referrer, tracking_params
from backend.worker.batch import CLICK_COLUMNS, Prepared
from backend.worker.main import build_consumer, keep_on_cpu, settle_memory, spare_cpu
from backend.worker.pipeline import Pipeline
from backend.worker.steps.write import Written

CONVERSION_SHARE = 0.02
UNATTRIBUTED_SHARE = 0.1  # conversions that arrive without a click id
VISITORS_PER_CLICK = 0.3  # repeat visitors, so uniqueness has work to do
SPAN_MS = 2 * HOUR_MS  # the events' times cover the last two hours
RAW_TABLES = ("clicks", "conversions")
# Events per stream entry: one web process's group commit under the HTTP benchmark's 64
# connections held 32 on average (65,783 events in 2,061 writes at 21,900 requests/s).
EVENTS_PER_ENTRY = 32
ENTRIES_PER_PIPELINE = 100
DRAIN_TIMEOUT_S = 3600  # a backlog of millions takes minutes


@dataclass(frozen=True, slots=True)
class WorkerReport:
    database: str  # "sqlite" or "postgresql"
    clicks_sent: int
    conversions_sent: int
    enqueue_s: float
    worker_s: float
    raw_s: float
    written: Written  # as the consumer counted it
    clicks_in_db: int
    conversions_in_db: int
    raw_rows: int
    raw_rows_in_db: int
    backlog: int  # stream entries left after the drain (acknowledged entries are deleted)
    batch_size: int
    events_per_entry: int
    worker_cpus: list[int | None]  # the CPU each worker kept its threads on (None: any)
    cpu: DrainCpu

    @property
    def events(self) -> int:
        return self.clicks_sent + self.conversions_sent

    @property
    def worker_rate(self) -> float:
        return self.events / self.worker_s

    @property
    def raw_rate(self) -> float:
        return self.events / self.raw_s

    @property
    def ratio(self) -> float:
        return self.raw_s / self.worker_s

    @property
    def ok(self) -> bool:
        return (
            self.clicks_in_db == self.written.clicks == self.clicks_sent
            and self.conversions_in_db == self.written.conversions == self.conversions_sent
            and self.raw_rows == self.raw_rows_in_db == self.events
            and self.backlog == 0
        )


@dataclass(frozen=True, slots=True)
class DrainCpu:
    """CPU seconds the drain cost: where a faster worker has to come from."""

    event_loop_s: float  # the workers' event-loop threads: decoding, enrichment, the pipeline
    other_threads_s: float  # the workers' other threads: the SQLite write
    redis_s: float  # the Redis server: the quality script and the stream

    def per_event_us(self, events: int) -> tuple[float, float, float]:
        scale = 1e6 / events
        return (self.event_loop_s * scale, self.other_threads_s * scale, self.redis_s * scale)


def _amount(rng: random.Random, currency: str) -> str:
    if currency == "JPY":
        return str(rng.randrange(800, 15_000))
    cents = rng.randrange(1_500, 25_000)
    return f"{cents // 100}.{cents % 100:02d}"


async def make_events(
    catalog: Catalog,
    programme: BenchProgramme,
    signer: ClickIdSigner,
    clicks: int,
    rng: random.Random,
    end_ms: int,
    first_order: int = 0,
    span_ms: int = SPAN_MS,
) -> tuple[list[QueuedEvent], int]:
    """``clicks`` clicks over the ``span_ms`` before ``end_ms`` and their conversions, in time
    order; also the number of conversions. Orders are numbered from ``first_order`` (calls that
    fill one stream differ in it)."""
    salt = rng.randbytes(32)
    visitors = [
        (
            browser,
            describe_visitor(
                ipaddress.ip_address(browser.address),
                browser.user_agent,
                browser.accept_language is not None,
                salt,
            ),
        )
        for browser in browsers(rng, max(1, int(clicks * VISITORS_PER_CLICK)))
    ]
    links: list[tuple[str, str, str, LinkInfo]] = []
    for link in programme.links:
        info = await catalog.link_by_id(link.id)
        if info is None:
            raise RuntimeError(f"link {link.id} is missing from the benchmark database")
        links.append((link.publisher_site, link.merchant_key, link.currency, info))
    start_ms = end_ms - span_ms
    events: list[QueuedEvent] = []
    human: list[tuple[ClickEvent, Visitor, str, str]] = []
    for index in range(clicks):
        site, merchant_key, currency, info = rng.choice(links)
        browser, visitor = rng.choice(visitors)
        _, click = build_click(
            info,
            tracking_params(rng, site),
            referrer(rng, site),
            visitor,
            signer,
            start_ms + index * span_ms // clicks,
        )
        events.append(click)
        if not browser.is_bot:
            human.append((click, visitor, merchant_key, currency))
    converting = rng.sample(human, min(len(human), round(clicks * CONVERSION_SHARE)))
    for number, (click, visitor, merchant_key, currency) in enumerate(converting):
        params = {
            "m": merchant_key,
            "oid": f"ORD-{first_order + number:07d}",
            "amt": _amount(rng, currency),
            "cur": currency,
        }
        if rng.random() >= UNATTRIBUTED_SHARE:
            params["clk"] = click.click_id
        at_ms = min(click.at_ms + rng.randrange(MINUTE_MS, 30 * MINUTE_MS), end_ms)
        events.append(await build_conversion(catalog, params, Source.PIXEL, visitor, at_ms))
    events.sort(
        key=lambda event: event.sale.at_ms if isinstance(event, NetworkEvent) else event.at_ms
    )
    return events, len(converting)


async def enqueue(redis: Redis, stream: str, events: Sequence[QueuedEvent]) -> None:
    """XADD the events in entries as the web's group commit writes them, pipelined."""
    payloads = [encode_event(event) for event in events]
    entries = [
        encode_entry(payloads[start : start + EVENTS_PER_ENTRY])
        for start in range(0, len(payloads), EVENTS_PER_ENTRY)
    ]
    for start in range(0, len(entries), ENTRIES_PER_PIPELINE):
        async with redis.pipeline(transaction=False) as pipe:
            for entry in entries[start : start + ENTRIES_PER_PIPELINE]:
                pipe.xadd(stream, {b"e": entry})
            await pipe.execute()


@dataclass(frozen=True, slots=True)
class _Drained:
    written: Written
    event_loop_s: float
    process_s: float
    peak_rss_bytes: int  # the worker process's, over its whole life


@dataclass(frozen=True, slots=True)
class Drain:
    """What the workers wrote, the seconds from their start to the last one's end, the CPU,
    and the largest peak resident memory among them."""

    written: Written
    seconds: float
    cpu: DrainCpu
    peak_rss_bytes: int


def peak_rss_bytes() -> int:
    """This process's peak resident memory (Linux counts ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _worker_process(settings: Settings, start: BarrierType, drained: Queue[_Drained]) -> None:
    """One worker: started as ``backend.worker.main`` starts it, then draining the stream once
    every worker is ready."""
    keep_on_cpu(settings.worker_cpu)

    async def work() -> _Drained:
        database = Database.connect(settings.database_url)
        consumer = build_consumer(settings, database, settings.redis_url)
        try:
            await consumer.ensure_group()
            settle_memory()
            await asyncio.to_thread(start.wait)
            process, loop = time.process_time(), time.thread_time()
            await consumer.drain()
            return _Drained(
                consumer.written,
                time.thread_time() - loop,
                time.process_time() - process,
                peak_rss_bytes(),
            )
        finally:
            await consumer.close()
            await database.dispose()

    drained.put(asyncio.run(work()))


async def drain(settings: Settings, cpus: Sequence[int | None]) -> Drain:
    """The measured path: a worker process per entry of ``cpus`` (each kept on that CPU) from
    the stream to committed rows."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(cpus) + 1)
    results: Queue[_Drained] = context.Queue()
    processes = [
        context.Process(
            target=_worker_process,
            args=(settings.with_overrides(worker_cpu=cpu), start, results),
        )
        for cpu in cpus
    ]
    for process in processes:
        process.start()
    redis = connect(settings.redis_url)
    try:
        await asyncio.to_thread(start.wait, timeout=60)
        started, server = time.perf_counter(), await redis_cpu_s(redis)
        drained = [await asyncio.to_thread(results.get, timeout=DRAIN_TIMEOUT_S) for _ in processes]
        seconds = time.perf_counter() - started
        server = await redis_cpu_s(redis) - server
    finally:
        await redis.aclose()
        for process in processes:
            process.join(timeout=60)
    written = sum((each.written for each in drained), Written(0, 0, 0, 0))
    event_loop = sum(each.event_loop_s for each in drained)
    others = sum(each.process_s - each.event_loop_s for each in drained)
    return Drain(
        written,
        seconds,
        DrainCpu(event_loop, others, server),
        max(each.peak_rss_bytes for each in drained),
    )


async def redis_cpu_s(redis: Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def worker_rows(
    settings: Settings, database: Database, events: Sequence[QueuedEvent]
) -> list[Prepared]:
    """The rows the worker wrote, batch by batch (uniqueness answers repeat for the same ids)."""
    redis = connect(settings.redis_url)
    try:
        pipeline = Pipeline(
            Catalog(database, settings.attribution_window_days),
            redis,
            ClickIdSigner(settings.secret_key),
            database,
        )
        size = settings.batch_size
        return [
            await pipeline.prepare(list(events[start : start + size]))
            for start in range(0, len(events), size)
        ]
    finally:
        await redis.aclose()


def _insert_sql(table: str, columns: Sequence[str], placeholders: Sequence[str]) -> str:
    names, values = ", ".join(columns), ", ".join(placeholders)
    return f"INSERT INTO {table} ({names}) VALUES ({values})"  # noqa: S608 - our table names


def insert_raw(path: Path, batches: Sequence[Prepared]) -> int:
    """The baseline on SQLite: plain ``executemany`` of the same rows, one transaction per
    batch."""
    connection = sqlite3.connect(path, isolation_level=None)
    clicks_sql = _insert_sql("clicks", CLICK_COLUMNS, ["?"] * len(CLICK_COLUMNS))
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        written = 0
        for batch in batches:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(clicks_sql, batch.clicks)
            if batch.conversions:
                columns = list(batch.conversions[0])
                placeholders = [f":{column}" for column in columns]
                sql = _insert_sql("conversions", columns, placeholders)
                connection.executemany(sql, batch.conversions)
            written += len(batch.clicks) + len(batch.conversions)
            connection.execute("COMMIT")
        return written
    finally:
        connection.close()


def driver_url(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as asyncpg takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def copy_raw(url: str, batches: Sequence[Prepared]) -> int:
    """The baseline on PostgreSQL: asyncpg's ``copy_records_to_table`` of the same rows into
    the emptied tables, one transaction per batch."""
    connection = await asyncpg.connect(driver_url(url))
    try:
        await connection.execute("TRUNCATE clicks, conversions CASCADE")
        written = 0
        for batch in batches:
            async with connection.transaction():
                await connection.copy_records_to_table(
                    "clicks", records=batch.clicks, columns=list(CLICK_COLUMNS)
                )
                if batch.conversions:
                    columns = list(batch.conversions[0])
                    await connection.copy_records_to_table(
                        "conversions",
                        records=[tuple(row.values()) for row in batch.conversions],
                        columns=columns,
                    )
            written += len(batch.clicks) + len(batch.conversions)
        return written
    finally:
        await connection.close()


async def reset_postgres(url: str) -> None:
    """Empty the database at ``url`` (every table of its public schema) for a new round."""
    connection = await asyncpg.connect(driver_url(url))
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await connection.close()


async def count_rows(url: str, *tables: str) -> int:
    database = Database.connect(url)
    try:
        async with database.session() as session:
            counts = [
                await session.scalar(text(f"SELECT count(*) FROM {table}"))  # noqa: S608
                for table in tables
            ]
        return sum(int(count or 0) for count in counts)
    finally:
        await database.dispose()


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy even with a WAL beside the file."""
    origin, copy = sqlite3.connect(source), sqlite3.connect(target)
    try:
        origin.backup(copy)
    finally:
        origin.close()
        copy.close()


@dataclass(frozen=True, slots=True)
class _Measured:
    conversions: int
    enqueue_s: float
    worker_s: float
    written: Written
    backlog: int
    batches: list[Prepared]
    cpu: DrainCpu


async def _measure(
    settings: Settings,
    programme: BenchProgramme,
    clicks: int,
    seed: int,
    cpus: Sequence[int | None],
) -> _Measured:
    database = Database.connect(settings.database_url)
    redis = connect(settings.redis_url)
    try:
        events, conversions = await make_events(
            Catalog(database, settings.attribution_window_days),
            programme,
            ClickIdSigner(settings.secret_key),
            clicks,
            random.Random(seed),
            now_ms(),
        )
        started = time.perf_counter()
        await enqueue(redis, settings.stream, events)
        enqueue_s = time.perf_counter() - started
        drained = await drain(settings, cpus)
        return _Measured(
            conversions=conversions,
            enqueue_s=enqueue_s,
            worker_s=drained.seconds,
            written=drained.written,
            backlog=int(await redis.xlen(settings.stream)),
            batches=await worker_rows(settings, database, events),
            cpu=drained.cpu,
        )
    finally:
        await redis.aclose()
        await database.dispose()


def new_database(path: Path, database_url: str | None) -> tuple[str, BenchProgramme]:
    """A migrated database with a programme: a new SQLite file at ``path``, or the PostgreSQL
    database at ``database_url`` emptied; its URL and the programme."""
    if database_url is None:
        return sqlite_url(path), asyncio.run(create_programme_database(path))
    asyncio.run(reset_postgres(database_url))
    return database_url, asyncio.run(create_programme(database_url))


def run_worker_bench(
    workdir: Path,
    clicks: int,
    workers: int = 1,
    seed: int = 2024,
    database_url: str | None = None,
) -> WorkerReport:
    """Everything in ``workdir``: its own Redis, the worker's database and the baseline's. The
    workers keep to CPUs as ``clicktrail run`` keeps its worker. ``database_url``: default new
    SQLite files; a PostgreSQL database is emptied, migrated and given a programme, and the
    baseline COPYs into its emptied tables after the workers' rows are counted."""
    cpus = [spare_cpu(index) for index in range(workers)]
    worker_db, raw_db = workdir / "worker.db", workdir / "raw.db"
    url, programme = new_database(worker_db, database_url)
    if database_url is None:
        copy_database(worker_db, raw_db)
    redis_server = EmbeddedRedis(workdir / "redis").start()
    try:
        settings = run_settings(workdir, url, redis_server.url)
        measured = asyncio.run(_measure(settings, programme, clicks, seed, cpus))
    finally:
        redis_server.stop()
    clicks_in_db = asyncio.run(count_rows(url, "clicks"))
    conversions_in_db = asyncio.run(count_rows(url, "conversions"))
    started = time.perf_counter()
    if database_url is None:
        raw_rows = insert_raw(raw_db, measured.batches)
    else:
        raw_rows = asyncio.run(copy_raw(url, measured.batches))
    raw_s = time.perf_counter() - started
    return WorkerReport(
        database="sqlite" if database_url is None else "postgresql",
        clicks_sent=clicks,
        conversions_sent=measured.conversions,
        enqueue_s=measured.enqueue_s,
        worker_s=measured.worker_s,
        raw_s=raw_s,
        written=measured.written,
        clicks_in_db=clicks_in_db,
        conversions_in_db=conversions_in_db,
        raw_rows=raw_rows,
        raw_rows_in_db=asyncio.run(
            count_rows(sqlite_url(raw_db) if database_url is None else url, *RAW_TABLES)
        ),
        backlog=measured.backlog,
        batch_size=settings.batch_size,
        events_per_entry=EVENTS_PER_ENTRY,
        worker_cpus=cpus,
        cpu=measured.cpu,
    )
