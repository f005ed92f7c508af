"""/metrics, /readyz, request ids and JSON logs, against the real app, Redis and database,
and a real ``clicktrail web`` process for what only a process shows (its log stream)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from backend.core.clock import now_ms
from backend.core.settings import Settings
from backend.storage.db.engine import Database
from backend.tooling.bench.processes import TrackerProcess, free_port, settings_env
from backend.web.app import create_app
from backend.worker.consumer import StreamConsumer
from tests.support import BROWSER_HEADERS, Programme, follow_link

HEX_ID = re.compile(r"[0-9a-f]{32}")
SAMPLE = re.compile(r"^(?P<series>[a-z_]+(?:\{.*\})?) (?P<value>\S+)$")


def samples(exposition: str) -> dict[str, float]:
    """Series (name with labels) to value; every non-comment line must be a sample."""
    found: dict[str, float] = {}
    for line in exposition.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) clicktrail_[a-z_]+ ", line), line
            continue
        match = SAMPLE.match(line)
        assert match, line
        found[match["series"]] = float(match["value"])
    return found


async def test_metrics_count_requests_events_batches_and_rejections(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer
) -> None:
    code, merchant = programme.link["code"], programme.merchant["key"]
    for _ in range(3):
        await follow_link(client, code)
    await client.get("/p.gif", params={"m": merchant, "oid": "M1", "amt": "5.00"})
    await client.get("/p.gif", params={"m": "mk_nobody", "oid": "M2", "amt": "5.00"})
    await client.get("/p.gif", params={"m": merchant, "oid": "M3", "amt": "lots"})
    await client.get("/c/unknown-code", headers=BROWSER_HEADERS)
    beacon = await client.post("/e", json={"m": merchant, "events": [{"oid": "M4", "amt": "1"}]})
    assert beacon.status_code == 202
    assert (await client.get("/no/such/page")).status_code == 404
    written = await consumer.drain()
    assert written == 8  # 3 clicks, 4 conversions (2 rejected), 1 unknown link

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    metrics = samples(response.text)
    requests = "clicktrail_http_requests_total"
    assert metrics[f'{requests}{{route="/c/{{code}}",status="302"}}'] == 3
    assert metrics[f'{requests}{{route="/c/{{code}}",status="404"}}'] == 1
    assert metrics[f'{requests}{{route="/p.gif",status="200"}}'] == 3
    assert metrics[f'{requests}{{route="/e",status="202"}}'] == 1
    assert metrics[f'{requests}{{route="unmatched",status="404"}}'] == 1
    assert metrics[f'{requests}{{route="/api/v1/links",status="201"}}'] == 1  # the programme
    assert metrics["clicktrail_events_queued_total"] == 8
    assert metrics["clicktrail_stream_length"] == 0
    assert metrics["clicktrail_stream_pending"] == 0
    assert metrics["clicktrail_stream_lag_seconds"] == 0
    assert metrics["clicktrail_stream_writes_total"] >= 1
    assert metrics["clicktrail_events_spooled_total"] == 0
    assert metrics["clicktrail_spool_bytes"] == 0
    batches = metrics["clicktrail_batches_written_total"]
    assert batches >= 1
    assert metrics["clicktrail_batch_size_count"] == batches
    assert metrics["clicktrail_batch_size_sum"] == 8
    assert metrics['clicktrail_batch_size_bucket{le="+Inf"}'] == batches
    assert metrics['clicktrail_batch_seconds_bucket{le="+Inf"}'] == batches
    assert metrics["clicktrail_batch_seconds_sum"] > 0
    assert metrics['clicktrail_rejected_events{reason="unknown_merchant"}'] == 1
    assert metrics['clicktrail_rejected_events{reason="invalid_amount"}'] == 1
    assert metrics['clicktrail_rejected_events{reason="unknown_link"}'] == 1


async def test_metrics_of_two_web_processes_add_up(
    settings: Settings, programme: Programme, redis: Redis
) -> None:
    """Two apps in one process (as the N processes of ``--workers N`` behind one port) are one
    scrape target: each scrape shows both apps' requests. Separate processes each show only
    their own: tests/test_metrics_targets.py."""
    async with (
        AsyncTestClient(create_app(settings)) as first,
        AsyncTestClient(create_app(settings)) as second,
    ):
        for client in (first, second, second):
            assert (await client.get("/healthz")).status_code == 200
        await first.get("/metrics")  # each scrape adds its own process's counts first
        metrics = samples((await second.get("/metrics")).text)
    assert metrics['clicktrail_http_requests_total{route="/healthz",status="200"}'] == 3


async def test_readyz_is_503_with_reasons_when_the_stream_lags(
    settings: Settings, redis: Redis, database: Database
) -> None:
    lagging = settings.with_overrides(ready_max_lag_s=30)
    async with AsyncTestClient(create_app(lagging)) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {
            "ready": True, "redis": "ok", "backlog": 0, "pending": 0, "lag_s": 0,
            "database": "ok", "last_event_ms": None, "workers": 0,
        }  # fmt: skip
        # An event queued a minute ago and still not written: the workers are behind.
        late_id = f"{_minute_ago_ms()}-0"
        await redis.xadd(settings.stream, {"e": b"x"}, id=late_id)
        late = await client.get("/readyz")
    assert late.status_code == 503
    body = late.json()
    assert body["ready"] is False
    assert body["backlog"] == 1
    assert body["lag_s"] >= 60
    assert body["last_event_ms"] == int(late_id.split("-")[0])
    assert body["reasons"] == ["stream lag 60s is over 30s: the workers are behind or stopped"]


def _minute_ago_ms() -> int:

    return now_ms() - 60_000


async def test_readyz_is_503_when_redis_is_unreachable_and_metrics_show_the_spool(
    settings: Settings, tmp_path: Path, database: Database
) -> None:
    dead = settings.with_overrides(redis_url=f"unix://{tmp_path}/no-redis.sock")
    async with AsyncTestClient(create_app(dead)) as client:
        pixel = await client.get("/p.gif", params={"m": "mk_any", "oid": "D1", "amt": "1"})
        response = await client.get("/readyz")
        metrics = await client.get("/metrics")
    assert pixel.status_code == 200  # spooled
    assert response.status_code == 503
    assert response.json()["reasons"] == ["redis unreachable"]
    assert response.json()["database"] == "ok"
    assert metrics.status_code == 200  # what can be read without Redis
    figures = samples(metrics.text)
    spooled = sum(path.stat().st_size for path in (dead.var_dir / "spool").glob("*.bin"))
    assert figures["clicktrail_spool_bytes"] == spooled > 0
    assert "clicktrail_stream_length" not in figures


async def test_request_id_is_taken_from_the_proxy_or_made_and_always_echoed(
    client: AsyncTestClient[Any], programme: Programme
) -> None:
    """The test client's peer is not an IP address, which the app treats as a local proxy."""
    given = await client.get("/healthz", headers={"X-Request-ID": "edge-7f3a.1"})
    assert given.headers["x-request-id"] == "edge-7f3a.1"
    made = await client.get("/healthz")
    assert HEX_ID.fullmatch(made.headers["x-request-id"])
    for malformed in ("has space", "x" * 65, 'quote"d'):
        answer = await client.get("/healthz", headers={"X-Request-ID": malformed})
        assert HEX_ID.fullmatch(answer.headers["x-request-id"]), malformed
    # The hot routes too, with their own headers intact.
    pixel = await client.get("/p.gif", params={"m": programme.merchant["key"], "oid": "R1"},
                             headers={"X-Request-ID": "pixel-1"})  # fmt: skip
    assert pixel.headers["x-request-id"] == "pixel-1"
    assert pixel.headers["content-type"] == "image/gif"
    click = await client.get(f"/c/{programme.link['code']}", headers=BROWSER_HEADERS)
    assert HEX_ID.fullmatch(click.headers["x-request-id"])
    assert click.headers["location"].startswith("https://shop.example/")


@pytest.fixture
def json_web(tmp_path: Path, settings: Settings) -> TrackerProcess:
    """``clicktrail web`` with JSON logs and the access log, trusting 127.0.0.1 only."""
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("one backend is enough for the log format")
    env = settings_env(settings) | {
        "CLICKTRAIL_LOG_FORMAT": "json",
        "CLICKTRAIL_ACCESS_LOG": "true",
        "CLICKTRAIL_TRUSTED_PROXIES": "127.0.0.1/32",
    }
    return TrackerProcess(free_port(), env, tmp_path / "web.log")


def test_a_web_process_logs_json_lines_with_the_request_id(
    json_web: TrackerProcess, tmp_path: Path
) -> None:
    json_web.start()
    try:
        with httpx.Client(base_url=json_web.origin) as proxy:
            trusted = proxy.get("/healthz", headers={"X-Request-ID": "from-nginx-1"})
        untrusted_transport = httpx.HTTPTransport(local_address="127.3.3.3")
        with httpx.Client(base_url=json_web.origin, transport=untrusted_transport) as stranger:
            untrusted = stranger.get("/healthz", headers={"X-Request-ID": "forged-by-client"})
    finally:
        json_web.stop()
    assert trusted.headers["x-request-id"] == "from-nginx-1"
    assert HEX_ID.fullmatch(untrusted.headers["x-request-id"])

    lines = (tmp_path / "web.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line, uvicorn's included
    assert {"time", "level", "logger", "message"} <= set(records[0])
    access = [r for r in records if r["logger"] == "clicktrail.access"]
    by_id = {r.get("request_id"): r for r in access}
    first = by_id["from-nginx-1"]
    assert (first["method"], first["path"], first["status"]) == ("GET", "/healthz", 200)
    assert first["client_prefix"] == "127.0.0.0/24"
    second = by_id[untrusted.headers["x-request-id"]]
    assert second["client_prefix"] == "127.3.3.0/24"
    assert "forged-by-client" not in "\n".join(lines)
    assert "127.3.3.3" not in "\n".join(lines)
