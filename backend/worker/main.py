"""The worker process: an arq worker whose startup hook runs the stream consumer.

Events never travel as arq jobs (a SIGKILLed job stays locked, a timed-out one is not retried:
DESIGN §7); arq runs the consumer loop beside it and the cron jobs, each tick once across
workers (``unique=True``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

from arq import cron
from arq.worker import run_worker

from backend.catalog import Catalog
from backend.db.engine import Database
from backend.ids import ClickIdSigner
from backend.redis_client import arq_settings, connect
from backend.reports.rollup import fold_closed_hours
from backend.settings import Settings
from backend.worker.consumer import StreamConsumer
from backend.worker.enrich import Enricher
from backend.worker.retention import purge_expired

log = logging.getLogger(__name__)
Context = dict[str, Any]


def build_consumer(settings: Settings, database: Database, redis_url: str) -> StreamConsumer:
    redis = connect(redis_url)
    catalog = Catalog(database, settings.attribution_window_days)
    return StreamConsumer(
        redis=redis,
        database=database,
        enricher=Enricher(catalog, redis, ClickIdSigner(settings.secret_key), database),
        stream=settings.stream,
        group=settings.consumer_group,
        batch_size=settings.batch_size,
        batch_max_wait_ms=settings.batch_max_wait_ms,
    )


async def startup(ctx: Context) -> None:
    settings: Settings = ctx["settings"]
    ctx["database"] = database = Database.connect(settings.database_url)
    ctx["consumer"] = consumer = build_consumer(settings, database, ctx["redis_url"])
    task = asyncio.create_task(consumer.run(), name="stream-consumer")
    task.add_done_callback(_exit_if_crashed)
    ctx["consumer_task"] = task
    log.info("consumer %s reading %s", consumer.name, settings.stream)


def _exit_if_crashed(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("stream consumer stopped", exc_info=task.exception())
        os.kill(os.getpid(), signal.SIGTERM)


async def shutdown(ctx: Context) -> None:
    """Let the batch in hand commit and be acknowledged before the process exits."""
    consumer: StreamConsumer | None = ctx.get("consumer")
    task: asyncio.Task[None] | None = ctx.get("consumer_task")
    if consumer is not None and task is not None:
        consumer.stop()
        await asyncio.wait({task}, timeout=60)
        await consumer.close()
    if "database" in ctx:
        await ctx["database"].dispose()


async def purge_job(ctx: Context) -> int:
    settings: Settings = ctx["settings"]
    deleted = await purge_expired(ctx["database"], settings.retention_days)
    log.info("retention purge deleted %d rows", deleted)
    return deleted


async def fold_job(ctx: Context) -> int:
    """Fold closed hours into the dimension rollup (report breakdowns read it)."""
    return await fold_closed_hours(ctx["database"])


def worker_options(settings: Settings, redis_url: str) -> dict[str, Any]:
    return {
        "functions": [],
        "cron_jobs": [
            cron(purge_job, hour={3}, minute={17}, unique=True, timeout=3600),
            cron(fold_job, minute=set(range(0, 60, 5)), unique=True, timeout=3600),
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": arq_settings(redis_url),
        "ctx": {"settings": settings, "redis_url": redis_url},
        "handle_signals": True,
        "keep_result": 3600,
    }


def run(settings: Settings, redis_url: str) -> None:
    run_worker(worker_options(settings, redis_url))
