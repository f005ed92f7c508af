"""Schemathesis fuzzes the management API from its own OpenAPI schema (``/schema``), against the
real web process on loopback with an admin API key, on each database: no server error, and no
answer outside the schema (status code, content type, headers, body).

The budget is bounded for CI (a fixed seed, ``FUZZ_EXAMPLES`` cases per operation and phase, a
wall-clock limit); ``CLICKTRAIL_FUZZ_EXAMPLES`` raises it for a run by hand. Two checks are left
out: ``positive_data_acceptance``, because some rules need more than a schema can say (a
reference to a merchant that exists, a known ISO 4217 code, at most ten years of stats): the
API answers those 400 naming the field, as documented; and ``allow_header_conformance``, because
Litestar 2's automatic OPTIONS answer lists only the first method registered on a path
(litestar-org/litestar#4169, fixed in Litestar 3).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from backend.core.settings import Settings
from backend.storage.db.engine import Database
from backend.tooling.bench.processes import TrackerProcess, free_port, settings_env
from backend.worker.consumer import StreamConsumer
from tests.support import create_api_key, create_programme, post_json

FUZZ_EXAMPLES = int(os.environ.get("CLICKTRAIL_FUZZ_EXAMPLES", "15"))
WALL_CLOCK_S = 90 + 6 * FUZZ_EXAMPLES
SEED = "21"
SKIPPED_CHECKS = "positive_data_acceptance,allow_header_conformance"


@pytest.fixture
def web(settings: Settings) -> Iterator[TrackerProcess]:
    """``clicktrail web`` on its own port, with the test's database and Redis."""
    port = free_port()
    served = replace(settings, public_url=f"http://127.0.0.1:{port}")
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    process = TrackerProcess(port, settings_env(served), settings.var_dir / "web.log").start()
    yield process
    process.stop()


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    consumer: StreamConsumer, database: Database, web: TrackerProcess, tmp_path: Path
) -> None:
    key = await create_api_key(database)
    headers = {"Authorization": f"Bearer {key}"}
    # Id 1 of every kind exists (the fuzzer tries the bounds of each id), a conversion too.
    async with httpx.AsyncClient(base_url=web.origin, timeout=10.0) as client:
        programme = await create_programme(client, headers)
        ids = {"partner_id": programme.partner["id"], "campaign_id": programme.campaign["id"]}
        await post_json(client, "/api/v1/commission-overrides", ids, headers)
        pixel = {"m": programme.merchant["key"], "oid": "F1", "amt": "12.50"}
        assert (await client.get("/p.gif", params=pixel)).status_code == 200
    await consumer.drain()

    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{web.origin}/schema/openapi.json",
        "--header",
        f"Authorization: Bearer {key}",
        "--max-examples",
        str(FUZZ_EXAMPLES),
        "--seed",
        SEED,
        "--workers",
        "1",
        "--exclude-checks",
        SKIPPED_CHECKS,
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--no-color",
    ]
    run = await asyncio.to_thread(
        subprocess.run,
        command,
        cwd=tmp_path,  # where schemathesis keeps its cache
        capture_output=True,
        text=True,
        timeout=WALL_CLOCK_S,
    )
    print(run.stdout[-3_000:])  # shown with -s: the summary and the number of cases
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-2_000:]
    generated = re.search(r"(\d+) generated", run.stdout)
    assert generated is not None
    assert int(generated.group(1)) >= 25 * FUZZ_EXAMPLES  # every operation was fuzzed
