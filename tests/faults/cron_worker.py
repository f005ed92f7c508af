"""``clicktrail worker`` with one more cron job, ticking every second, for the cron fault.

The tick is the retention purge's cron entry with its schedule and function swapped, so it
has exactly the flags every cron job of the worker gets (``unique``, ``keep_result``): if those
stopped making each tick run once across workers, the test would see it. Run as
``python -m tests.faults.cron_worker``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from arq.worker import run_worker

from backend.core.settings import load_settings
from backend.worker.main import purge_job, worker_options

TICKS = "faults:cron-ticks"


async def tick(ctx: dict[str, Any]) -> None:
    """Count this tick's runs, by the job id arq gives each scheduled tick."""
    await ctx["redis"].hincrby(TICKS, ctx["job_id"], 1)


def main() -> None:
    logging.basicConfig(level=logging.INFO)  # the harness reads the worker's log
    settings = load_settings()
    options = worker_options(settings, settings.redis_url)
    (purge,) = [job for job in options["cron_jobs"] if job.coroutine is purge_job]
    every_second = dataclasses.replace(
        purge, name="cron:tick", coroutine=tick, hour=None, minute=None, second=set(range(60))
    )
    run_worker({**options, "cron_jobs": [*options["cron_jobs"], every_second]})


if __name__ == "__main__":
    main()
