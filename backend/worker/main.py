"""The worker process: an arq worker whose startup hook runs the stream consumer.

Events never travel as arq jobs (a SIGKILLed job stays locked, a timed-out one is not retried:
DESIGN §7); arq runs the consumer loop beside it and the cron jobs, each tick once across
workers (``unique=True``). The outbox's courier (partners' postbacks, webhooks) is a task of its
own beside the consumer, for the same reasons, and so is the mail courier (the mail outbox).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from datetime import UTC
from typing import Any

from arq import cron
from arq.cron import CronJob
from arq.typing import WorkerCoroutine
from arq.worker import Worker
from redis.exceptions import RedisError

from backend.core.clock import DAY_MS, DAY_S, HOUR_S, now_ms
from backend.core.ids import ClickIdSigner
from backend.core.settings import Settings
from backend.domain.affiliate.auto_approval import approve_due
from backend.domain.affiliate.link_health import check_links
from backend.domain.affiliate.payouts import draft_scheduled
from backend.domain.mail.delivery import forget_files
from backend.domain.visitor import forget_past_salts
from backend.storage.catalog import Catalog
from backend.storage.db.engine import Database
from backend.storage.db.partitions import create_ahead
from backend.storage.redis_client import arq_settings, connect
from backend.storage.rollups.by_dimension import fold_closed_hours
from backend.worker.consumer import StreamConsumer
from backend.worker.deliveries import Courier
from backend.worker.mail import MailCourier
from backend.worker.metrics_listener import serve_metrics
from backend.worker.pipeline import Pipeline
from backend.worker.retention import purge_expired
from backend.worker.retry import jittered
from backend.worker.scheduled_reports import write_weekly_sources

YOUNG_COLLECTION_EVERY = 10_000
POLL_BACKOFF_START_S = 0.5
POLL_BACKOFF_MAX_S = 10.0
log = logging.getLogger(__name__)
Context = dict[str, Any]
CRON_RESULT_KEPT_S = DAY_S


def build_consumer(
    settings: Settings, database: Database, redis_url: str, name: str | None = None
) -> StreamConsumer:
    """A consumer with a connection of its own, named ``name`` (default: host and process)."""
    redis = connect(redis_url)
    catalog = Catalog(database, settings.attribution_window_days)
    return StreamConsumer(
        redis=redis,
        database=database,
        pipeline=Pipeline(catalog, redis, ClickIdSigner(settings.secret_key), database),
        stream=settings.stream,
        group=settings.consumer_group,
        batch_size=settings.batch_size,
        batch_max_wait_ms=settings.batch_max_wait_ms,
        claim_idle_ms=settings.claim_idle_ms,
        name=name,
    )


def settle_memory() -> None:
    """What startup built lives for good: keep it out of full collections (``gc.freeze``). A
    batch allocates thousands of short-lived rows: collect the young generation every 10,000
    allocations rather than 700 (in the worker benchmark, 0.5 µs less CPU per event)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])


def keep_on_cpu(cpu: int | None) -> None:
    """Keep the worker's threads (this one and those it starts) on ``cpu``. The event loop and
    the writer thread take turns on the GIL anyway; on one core a turn needs no wakeup of
    another, and the rows the loop built are still in that core's cache when the writer binds
    them (worker benchmark, 2 cores: 12 µs of CPU per event instead of 14.5, and a fifth more
    events per second). Call before any thread starts."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def spare_cpu(index: int = 0) -> int | None:
    """The CPU ``clicktrail run`` (and the benchmark) give their ``index``-th worker, counting
    back from the last one (the web and Redis stay free to move; the kernel takes them off a
    busy core); None on a single CPU or where the system cannot keep a process to CPUs."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[-1 - index % len(cpus)] if len(cpus) > 1 else None


async def startup(ctx: Context) -> None:
    settings: Settings = ctx["settings"]
    ctx["database"] = database = Database.connect(settings.database_url)
    ctx["consumer"] = consumer = build_consumer(settings, database, ctx["redis_url"])
    settle_memory()
    task = asyncio.create_task(consumer.run(), name="stream-consumer")
    task.add_done_callback(_exit_if_crashed)
    ctx["consumer_task"] = task
    log.info("consumer %s reading %s", consumer.name, settings.stream)
    ctx["courier"] = courier = Courier(database, settings.outbound_allow)
    ctx["courier_task"] = asyncio.create_task(courier.run(), name="outbox-courier")
    ctx["mail_courier"] = mail_courier = MailCourier(database, settings)
    ctx["mail_courier_task"] = asyncio.create_task(mail_courier.run(), name="mail-courier")
    if settings.worker_metrics_port is not None:
        ctx["metrics_redis"] = metrics_redis = connect(ctx["redis_url"])
        ctx["metrics_server"] = await serve_metrics(
            metrics_redis, settings.worker_metrics_host, settings.worker_metrics_port
        )
        log.info(
            "metrics on http://%s:%d/metrics",
            settings.worker_metrics_host,
            settings.worker_metrics_port,
        )


def _exit_if_crashed(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("stream consumer stopped", exc_info=task.exception())
        os.kill(os.getpid(), signal.SIGTERM)


async def shutdown(ctx: Context) -> None:
    """Let the batch in hand commit and be acknowledged before the process exits."""
    metrics_server: asyncio.Server | None = ctx.get("metrics_server")
    if metrics_server is not None:
        metrics_server.close()
        await ctx["metrics_redis"].aclose()
    consumer: StreamConsumer | None = ctx.get("consumer")
    task: asyncio.Task[None] | None = ctx.get("consumer_task")
    if consumer is not None and task is not None:
        consumer.stop()
        await asyncio.wait({task}, timeout=60)
        await consumer.close()
    courier: Courier | None = ctx.get("courier")
    courier_task: asyncio.Task[None] | None = ctx.get("courier_task")
    if courier is not None and courier_task is not None:
        courier.stop()  # a delivery in flight ends within its timeout; its lease covers it
        await asyncio.wait({courier_task}, timeout=15)
    mail_courier: MailCourier | None = ctx.get("mail_courier")
    mail_task: asyncio.Task[None] | None = ctx.get("mail_courier_task")
    if mail_courier is not None and mail_task is not None:
        mail_courier.stop()  # a mail in flight ends within its timeout; its lease covers it
        await asyncio.wait({mail_task}, timeout=35)
    if "database" in ctx:
        await ctx["database"].dispose()


async def purge_job(ctx: Context) -> int:
    settings: Settings = ctx["settings"]
    deleted = await purge_expired(ctx["database"], ctx["redis"], settings.retention_days)
    cutoff_ms = now_ms() - settings.retention_days * DAY_MS
    files = await asyncio.to_thread(forget_files, settings, cutoff_ms)
    log.info("retention purge deleted %d rows and %d mail files", deleted, files)
    return deleted


async def forget_job(ctx: Context) -> bool:
    """After midnight UTC: yesterday's salt off Redis's disk too, with the acknowledged stream
    entries (visitor hashes, network prefixes) that the append-only file still holds."""
    return await forget_past_salts(ctx["redis"])


async def auto_approve_job(ctx: Context) -> int:
    approved = await approve_due(ctx["database"])
    log.info("auto-approval approved %d conversions", approved)
    return approved


async def payout_schedule_job(ctx: Context) -> list[int]:
    """Draft the payout runs merchants' schedules (monthly, bi-weekly) owe this period."""
    drafted = await draft_scheduled(ctx["database"])
    if drafted:
        log.info("drafted payout runs %s", drafted)
    return drafted


async def link_health_job(ctx: Context) -> dict[str, int]:
    settings: Settings = ctx["settings"]
    counts = await check_links(ctx["database"], settings.outbound_allow)
    log.info("link health: %(ok)d ok, %(broken)d broken", counts)
    return counts


async def partition_job(ctx: Context) -> list[str]:
    """PostgreSQL: this month's and the next two months' partitions of the raw event tables."""
    created = await create_ahead(ctx["database"])
    if created:
        log.info("created partitions %s", ", ".join(created))
    return created


async def fold_job(ctx: Context) -> int:
    """Fold closed hours into the dimension rollup (report breakdowns read it)."""
    return await fold_closed_hours(ctx["database"])


async def weekly_sources_job(ctx: Context) -> str:
    """Mondays: last week's per-network report as a CSV under ``var/reports/``."""
    settings: Settings = ctx["settings"]
    path = await write_weekly_sources(ctx["database"], settings.var_dir / "reports", now_ms())
    log.info("wrote %s", path)
    return str(path)


def _once_per_tick(job: WorkerCoroutine, **when: Any) -> CronJob:
    """A cron job that runs once per tick across all workers.

    ``unique`` stops a second worker from enqueuing a tick already queued; ``keep_result`` keeps
    the finished tick's result key, which is what makes arq refuse the same tick enqueued again
    by a worker that stalled past it (without it the tick would run a second time once arq's
    60 s in-progress mark expires).
    """
    return cron(job, unique=True, keep_result=CRON_RESULT_KEPT_S, **when)


def worker_options(settings: Settings, redis_url: str) -> dict[str, Any]:
    return {
        "functions": [],
        "cron_jobs": [
            _once_per_tick(purge_job, hour={3}, minute={17}, timeout=HOUR_S),
            # after the day's salt (5 min) and prefix windows (15 min) have expired
            _once_per_tick(forget_job, hour={0}, minute={20}, timeout=1800),
            _once_per_tick(auto_approve_job, minute={7, 37}, timeout=1800),
            _once_per_tick(payout_schedule_job, hour={6}, minute={23}, timeout=1800),
            _once_per_tick(link_health_job, hour={4}, minute={41}, timeout=1800),
            _once_per_tick(partition_job, hour={2}, minute={41}, timeout=600),
            _once_per_tick(fold_job, minute=set(range(0, 60, 5)), timeout=HOUR_S),
            _once_per_tick(weekly_sources_job, weekday={0}, hour={5}, minute={13}, timeout=1800),
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": arq_settings(redis_url),
        "timezone": UTC,  # cron times, like every time here, are UTC
        "ctx": {"settings": settings, "redis_url": redis_url},
        "handle_signals": True,
        "keep_result": HOUR_S,
    }


class SteadfastWorker(Worker):
    """arq's worker, whose poll loop (cron ticks, health key) outlasts a Redis outage of any
    length: a poll that fails on Redis, once its commands have been retried for some 20 s
    (``redis_client.arq_settings``), is tried again after a jittered backoff instead of ending
    the process; a cron tick that fell due in the outage is skipped. The stream consumer
    beside it waits for Redis on its own. ``_poll_iteration`` is arq 0.28's one poll (the
    version pyproject pins)."""

    _outage_backoff_s = 0.0

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except (RedisError, OSError) as error:
            self._outage_backoff_s = min(
                max(self._outage_backoff_s * 2, POLL_BACKOFF_START_S), POLL_BACKOFF_MAX_S
            )
            pause = jittered(self._outage_backoff_s)
            log.warning("worker polling redis again in %.1fs after: %s", pause, error)
            await asyncio.sleep(pause)
        else:
            if self._outage_backoff_s:
                log.info("worker polls redis again")
            self._outage_backoff_s = 0.0


def run(settings: Settings, redis_url: str) -> None:
    keep_on_cpu(settings.worker_cpu)
    SteadfastWorker(**worker_options(settings, redis_url)).run()
