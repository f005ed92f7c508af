"""Fixtures of the browser tests: headless Chromium, three origins and the real tracker.

Session-wide (started once, because each costs a second or more): the browser, the
publisher's site on ``127.0.0.1``, the merchant's site on ``localhost`` and the tracker, the
real ``clicktrail web`` process on its own port, with its own copy of the migrated database
and the session's Redis. Per test: a fresh programme made through the management API over HTTP
(so tests never see each other's rows), an empty Redis, empty page values and a fresh browser
context (no cookie or storage carried over).

Events reach the database the way they do in production, through the worker's stream
consumer, run here in the test process after the browser steps. Everything async runs on the
session's event loop, which the browser and the database engines belong to.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    WebError,
    async_playwright,
)

from backend.core.settings import Settings
from backend.storage.db.engine import Database
from backend.storage.redis_client import connect
from backend.storage.redis_server import EmbeddedRedis
from backend.tooling.bench.processes import TrackerProcess, free_port, settings_env
from backend.worker.main import build_consumer
from tests.browser.servers import StaticSite
from tests.browser.support import (
    WAIT_S,
    Programme,
    ProgrammeFactory,
    Sites,
    Store,
    Wire,
    create_programme,
)
from tests.support import create_api_key, require_binary

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A visitor's desktop Chrome: headless Chromium says "HeadlessChrome", which the worker rightly
# flags as a bot; the journey is a person's, so the browser presents itself as one.
DESKTOP_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
SECRET = "browser-tests-secret-key-long-enough-0123456789"


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where the browser tests keep their pictures of the pages (desktop and phone width):
    ``$CLICKTRAIL_TEST_OUTPUT/screenshots``, by default ``test-output/screenshots`` in the
    checkout, kept after the run for a person to look at."""
    root = Path(os.environ.get("CLICKTRAIL_TEST_OUTPUT", Path(__file__).parents[2] / "test-output"))
    folder = root / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium (never a downloaded browser)."""
    return require_binary(CHROMIUM, "chromium")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=LAUNCH_ARGS, headless=True
        )
        yield browser
        await browser.close()


@dataclass(frozen=True)
class TrackerDatabase:
    url: str
    database: Database
    admin_key: str


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def tracker_database(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> AsyncIterator[TrackerDatabase]:
    """The tracker's own copy of the migrated database, with an admin API key in it."""
    path = tmp_path_factory.mktemp("tracker-db") / "clicktrail.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite+aiosqlite:///{path}"
    database = Database.connect(url)
    key = await create_api_key(database)
    yield TrackerDatabase(url, database, key)
    await database.dispose()


@pytest.fixture(scope="session")
def tracker_settings(
    tmp_path_factory: pytest.TempPathFactory,
    tracker_database: TrackerDatabase,
    redis_server: EmbeddedRedis,
) -> Settings:
    """What the tracker is started with, and what the test's consumer must agree with."""
    return Settings(
        var_dir=tmp_path_factory.mktemp("tracker-var"),
        database_url=tracker_database.url,
        redis_url=redis_server.url,
        secret_key=SECRET,  # the consumer checks the signatures of the tracker's click ids
        public_url=f"http://127.0.0.1:{free_port()}",
        batch_max_wait_ms=0,
    )


@pytest.fixture(scope="session")
def tracker(
    tmp_path_factory: pytest.TempPathFactory, tracker_settings: Settings
) -> Iterator[TrackerProcess]:
    """The real web server, configured only through its environment, as deployed."""
    settings = tracker_settings
    port = int(settings.public_url.rsplit(":", 1)[1])
    env = settings_env(settings)
    log = tmp_path_factory.mktemp("tracker-log") / "web.log"
    process = TrackerProcess(port, env, log).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def site_servers() -> Iterator[Sites]:
    # Both listen on 127.0.0.1; the merchant's is addressed as "localhost", which Chromium
    # resolves to loopback itself: another host, so another site for cookies and storage.
    publisher = StaticSite("publisher", "127.0.0.1").start()
    merchant = StaticSite("merchant", "localhost").start()
    yield Sites(publisher, merchant)
    publisher.stop()
    merchant.stop()


@pytest.fixture
def sites(site_servers: Sites) -> Sites:
    """The two sites, with no page values left from another test."""
    site_servers.publisher.values = {}
    site_servers.merchant.values = {}
    return site_servers


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def store_session(
    tracker_database: TrackerDatabase, tracker_settings: Settings
) -> AsyncIterator[Store]:
    redis = connect(tracker_settings.redis_url)
    consumer = build_consumer(
        tracker_settings, tracker_database.database, tracker_settings.redis_url
    )
    yield Store(tracker_database.database, consumer, redis, tracker_settings.stream)
    await consumer.close()
    await redis.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def store(store_session: Store) -> Store:
    """The store, with Redis emptied: the server is shared by the session, the stream is not."""
    await store_session.redis.flushall()
    return store_session


@pytest_asyncio.fixture(loop_scope="session")
async def make_programme(
    tracker: TrackerProcess, tracker_database: TrackerDatabase
) -> AsyncIterator[ProgrammeFactory]:
    """Make a programme whose campaign lands on a given merchant page URL."""
    headers = {"Authorization": f"Bearer {tracker_database.admin_key}"}
    async with httpx.AsyncClient(base_url=tracker.origin, timeout=10.0) as client:

        async def make(destination: str) -> Programme:
            return await create_programme(client, headers, destination)

        yield make


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile per test: no cookie or storage survives from another test."""
    context = await browser.new_context(user_agent=DESKTOP_UA, locale="en-GB")
    context.set_default_timeout(WAIT_S * 1000)  # a lost beacon fails in seconds, not 30
    yield context
    await context.close()


@pytest_asyncio.fixture(loop_scope="session")
async def wire(context: BrowserContext) -> Wire:
    """Recorded from the context, so that every page and every redirect is in it."""
    recorded = Wire()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            recorded.console_errors.append(message.text)

    def on_error(error: WebError) -> None:
        recorded.page_errors.append(str(error.error))

    def on_request(request: Request) -> None:
        recorded.requests.append(request)

    context.on("request", on_request)
    context.on("console", on_console)
    context.on("weberror", on_error)
    return recorded


@pytest_asyncio.fixture(loop_scope="session")
async def page(context: BrowserContext, wire: Wire) -> Page:
    """A tab of the test's context, opened once the wire is being recorded."""
    return await context.new_page()
