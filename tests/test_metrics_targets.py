"""Prometheus scraping every process: real ``clicktrail web`` and ``clicktrail worker``
processes on one Redis and database, each scraped on its own, their counters summed. Each
event must count once: no process may show another's counts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from backend.core.settings import Settings
from backend.tooling.bench.processes import (
    ClicktrailProcess,
    TrackerProcess,
    WorkerProcess,
    accepting,
    free_ports,
    settings_env,
)
from tests.support import Programme
from tests.test_observability import samples

PIXELS = 'clicktrail_http_requests_total{route="/p.gif",status="200"}'
SCRAPE_WAIT_S = 60.0


async def scrape(url: str) -> dict[str, float]:
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def send_pixels(origin: str, merchant: str, count: int, tag: str) -> None:
    """``count`` conversion pixels, each on a connection of its own (so that processes sharing
    a port each take some)."""
    for number in range(count):
        async with httpx.AsyncClient(base_url=origin) as http:
            pixel = await http.get("/p.gif", params={"m": merchant, "oid": f"{tag}-{number}"})
        assert pixel.status_code == 200


async def summed(urls: list[str], series: str, want: float) -> list[dict[str, float]]:
    """Scrape ``urls`` until ``series`` adds up to ``want`` over them (the workers write in the
    background); the last scrapes."""
    deadline = asyncio.get_running_loop().time() + SCRAPE_WAIT_S
    while True:
        scrapes = [await scrape(url) for url in urls]
        if sum(s.get(series, 0) for s in scrapes) >= want:
            return scrapes
        if asyncio.get_running_loop().time() > deadline:
            return scrapes  # the caller's assertion says what was missing
        await asyncio.sleep(0.1)


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return settings_env(settings)


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as processes:
        yield processes


async def test_every_web_and_worker_process_scraped_and_summed_counts_each_event_once(
    env: dict[str, str], stack: ExitStack, tmp_path: Path, programme: Programme
) -> None:
    merchant = programme.merchant["key"]
    web_ports, metrics_ports = free_ports(2), free_ports(2)
    for number, port in enumerate(metrics_ports):
        worker_env = env | {"CLICKTRAIL_WORKER_METRICS_PORT": str(port)}
        stack.enter_context(WorkerProcess(worker_env, tmp_path / f"worker-{number}.log"))
    webs = [
        stack.enter_context(TrackerProcess(p, env, tmp_path / f"web-{p}.log")) for p in web_ports
    ]

    await send_pixels(webs[0].origin, merchant, 7, "A")
    await send_pixels(webs[1].origin, merchant, 5, "B")

    workers = [f"http://127.0.0.1:{port}/metrics" for port in metrics_ports]
    worker_scrapes = await summed(workers, "clicktrail_batch_size_sum", 12)
    web_scrapes = [await scrape(f"{web.origin}/metrics") for web in webs]

    # Each web process shows its own requests and events, not the other's.
    assert [s[PIXELS] for s in web_scrapes] == [7, 5]
    assert [s["clicktrail_events_queued_total"] for s in web_scrapes] == [7, 5]
    assert [s["clicktrail_batches_written_total"] for s in web_scrapes] == [0, 0]
    # Each worker shows its own batches; together they wrote each event once.
    assert sum(s["clicktrail_batch_size_sum"] for s in worker_scrapes) == 12
    batches = sum(s["clicktrail_batches_written_total"] for s in worker_scrapes)
    assert batches == sum(s['clicktrail_batch_size_bucket{le="+Inf"}'] for s in worker_scrapes)
    assert batches >= 1
    assert all(PIXELS not in s for s in worker_scrapes)
    assert all("clicktrail_stream_length" not in s for s in worker_scrapes)  # the webs' to show
    # Everything summed over every target: each event once.
    everything = web_scrapes + worker_scrapes
    assert sum(s.get(PIXELS, 0) for s in everything) == 12
    assert sum(s["clicktrail_events_queued_total"] for s in everything) == 12

    async with httpx.AsyncClient() as http:
        elsewhere = await http.get(workers[0].replace("/metrics", "/other"))
    assert elsewhere.status_code == 404


async def test_web_processes_sharing_a_port_are_one_target(
    env: dict[str, str], stack: ExitStack, tmp_path: Path, programme: Programme
) -> None:
    """``clicktrail web --workers 2``: a scrape reaches either process and shows both (the
    other's counts once its next flush, within a second, has added them)."""
    (port,) = free_ports(1)
    arguments = ["web", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    web = ClicktrailProcess(arguments, env, tmp_path / "web.log", accepting(port))
    stack.enter_context(web)
    origin = f"http://127.0.0.1:{port}"

    await send_pixels(origin, programme.merchant["key"], 20, "S")

    await summed([f"{origin}/metrics"], PIXELS, 20)
    scrapes = [await scrape(f"{origin}/metrics") for _ in range(6)]
    assert [s[PIXELS] for s in scrapes] == [20] * 6
    assert [s["clicktrail_events_queued_total"] for s in scrapes] == [20] * 6
