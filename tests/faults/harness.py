"""The fault harness: real processes, numbered events over HTTP, an audit in SQL.

A ``Stack`` is one deployment in a temporary directory: the embedded ``redis-server``, one
``clicktrail web`` and any number of ``clicktrail worker`` processes, on SQLite or PostgreSQL.
``send`` fires uniquely numbered events at the web process concurrently (a click carrying its
number in ``sub1``, a pixel or a beacon conversion carrying it as the order id) and records
each answer as acknowledged, failed or unknown (timed out). ``post_postbacks`` does the same
for signed postbacks, as a merchant's server sends them: each the same signed bytes every time
it is posted, so a copy after the first is a replay. After the fault, ``audit`` reads what was
stored and what is left in the stream and says what was lost, unexpected or doubled.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import httpx
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from sqlalchemy import func, select

from backend.core.settings import Settings
from backend.domain.events import ClickEvent, ConversionEvent, decode_entry
from backend.storage.db.engine import Database
from backend.storage.db.models import Click, Conversion, RejectedEventRow, StatsHourly
from backend.storage.redis_client import connect
from backend.storage.redis_server import EmbeddedRedis
from backend.storage.streams.entries import entry_size
from backend.storage.streams.spool import Spool
from backend.tooling.bench.processes import TrackerProcess, WorkerProcess, free_port, settings_env
from tests.postback_support import PATH as POSTBACK_PATH
from tests.postback_support import sale, signed
from tests.support import BROWSER_HEADERS, Programme, create_api_key, create_programme

GIF_LENGTH = 43
ANSWER_TIMEOUT_S = 5.0
CONCURRENCY = 32


class Outcome(StrEnum):
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"
    UNKNOWN = "unknown"  # no answer in time: the event may or may not have been taken


def event_key(number: int) -> str:
    """Event ``number``'s kind and number, stored as its ``sub1`` or order id."""
    kind = ("click", "pixel", "beacon")[number % 3]
    return f"{kind}-{number}"


def keys_of(entry: bytes) -> list[str]:
    """The harness keys the events of a stream entry carry (those that are ours)."""
    keys: list[str | None] = []
    for event in decode_entry(entry):
        if isinstance(event, ClickEvent):
            keys.append(event.sub1)
        elif isinstance(event, ConversionEvent):
            keys.append(event.order_id)
    return [key for key in keys if key]


@dataclass
class Ledger:
    """Every event sent and the answer it got."""

    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def keys(self, outcome: Outcome) -> set[str]:
        return {key for key, got in self.outcomes.items() if got is outcome}

    @property
    def summary(self) -> str:
        counts = Counter(self.outcomes.values())
        return ", ".join(f"{counts[outcome]} {outcome}" for outcome in Outcome)


async def _send_one(
    client: httpx.AsyncClient, programme: Programme, number: int
) -> tuple[str, Outcome]:
    key = event_key(number)
    try:
        if key.startswith("click"):
            response = await client.get(
                f"/c/{programme.link['code']}", params={"sub1": key}, headers=BROWSER_HEADERS
            )
            taken = response.status_code == 302
        elif key.startswith("pixel"):
            params = {"m": programme.merchant["key"], "oid": key, "amt": "1.00", "cur": "EUR"}
            response = await client.get("/p.gif", params=params, headers=BROWSER_HEADERS)
            taken = response.status_code == 200 and len(response.content) == GIF_LENGTH
        else:
            body = {"m": programme.merchant["key"], "events": [{"oid": key, "amt": "1.00"}]}
            response = await client.post("/e", json=body, headers=BROWSER_HEADERS)
            taken = response.status_code == 202 and response.json()["accepted"] == 1
    except httpx.TimeoutException:
        return key, Outcome.UNKNOWN
    except httpx.HTTPError:
        return key, Outcome.FAILED
    return key, Outcome.ACKNOWLEDGED if taken else Outcome.FAILED


async def send(origin: str, programme: Programme, numbers: Iterable[int], ledger: Ledger) -> None:
    """Send events ``numbers`` over ``CONCURRENCY`` connections, recording each answer."""
    pending = iter(numbers)
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=origin, timeout=ANSWER_TIMEOUT_S, limits=limits, follow_redirects=False
    ) as client:

        async def connection() -> None:
            for number in pending:
                key, outcome = await _send_one(client, programme, number)
                ledger.outcomes[key] = outcome

        await asyncio.gather(*(connection() for _ in range(CONCURRENCY)))


def postback_key(number: int) -> str:
    """Postback ``number``'s order id (a key of its own, apart from the browser events')."""
    return f"postback-{number}"


@dataclass(frozen=True)
class Postback:
    """One sale as its sender signed it once: every copy posted is these same bytes."""

    key: str
    body: bytes
    headers: dict[str, str]


def signed_postback(programme: Programme, number: int, at: int) -> Postback:
    key = postback_key(number)
    merchant = programme.merchant
    body, headers = signed(
        {"merchant": merchant["key"], **sale(key, "1.00")}, merchant["postback_secret"], at
    )
    return Postback(key, body, headers)


async def _post(client: httpx.AsyncClient, postback: Postback) -> str:
    """What the answer said: queued, duplicate, unavailable (503 with Retry-After), timeout,
    failed (no answer) or the status of any other answer."""
    try:
        response = await client.post(POSTBACK_PATH, content=postback.body, headers=postback.headers)
    except httpx.TimeoutException:
        return "timeout"
    except httpx.HTTPError:
        return "failed"
    if response.status_code == 202 and response.json().get("queued") is True:
        return "queued"
    if response.status_code == 200 and response.json() == {"duplicate": True}:
        return "duplicate"
    if response.status_code == 503 and response.headers.get("retry-after", "").isdigit():
        return "unavailable"
    return f"status {response.status_code}"


def postback_outcome(answers: list[str]) -> Outcome:
    """Acknowledged: queued once, every other copy told it is a duplicate."""
    if "timeout" in answers:
        return Outcome.UNKNOWN
    if Counter(answers) == Counter(queued=1, duplicate=len(answers) - 1):
        return Outcome.ACKNOWLEDGED
    return Outcome.FAILED


async def post_postbacks(
    origin: str, postbacks: list[Postback], copies: int, ledger: Ledger
) -> Counter[str]:
    """Post each postback ``copies`` times (every other one all at once, the rest one after
    another) over ``CONCURRENCY`` connections; record each outcome, return the answers."""
    pending = iter(enumerate(postbacks))
    answers: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=origin, timeout=ANSWER_TIMEOUT_S, limits=limits
    ) as client:

        async def connection() -> None:
            for index, postback in pending:
                if index % 2:
                    got = [await _post(client, postback) for _ in range(copies)]
                else:
                    got = list(
                        await asyncio.gather(*(_post(client, postback) for _ in range(copies)))
                    )
                answers.update(got)
                ledger.outcomes[postback.key] = postback_outcome(got)

        await asyncio.gather(*(connection() for _ in range(CONCURRENCY)))
    return answers


@dataclass
class Audit:
    """What the database and the stream hold after a run, against what was sent."""

    ledger: Ledger
    stored: Counter[str]
    stream_length: int
    pending: int
    rollup_clicks: int
    rollup_conversions: int
    rollup_revenue: int
    revenue: int
    rejected: Counter[str]

    @property
    def lost(self) -> set[str]:
        return self.ledger.keys(Outcome.ACKNOWLEDGED) - set(self.stored)

    @property
    def unexpected(self) -> set[str]:
        return set(self.stored) - set(self.ledger.outcomes)

    @property
    def duplicates(self) -> set[str]:
        return {key for key, times in self.stored.items() if times > 1}

    @property
    def rows(self) -> tuple[int, int]:
        clicks = sum(times for key, times in self.stored.items() if key.startswith("click"))
        return clicks, self.stored.total() - clicks

    def check(self, rejected: dict[str, int] | None = None) -> None:
        """Nothing lost, nothing unexpected, nothing doubled (rows or rollup), nothing left,
        and nothing rejected but the ``rejected`` reasons named (a good event turned away
        as poison is lost too)."""
        assert dict(self.rejected) == (rejected or {}), f"rejected: {dict(self.rejected)}"
        assert self.lost == set(), f"lost {len(self.lost)}: {sorted(self.lost)[:10]}"
        assert self.unexpected == set(), f"unexpected: {sorted(self.unexpected)[:10]}"
        assert self.duplicates == set(), f"duplicates: {sorted(self.duplicates)[:10]}"
        assert (self.rollup_clicks, self.rollup_conversions) == self.rows, "rollup is off"
        assert self.rollup_revenue == self.revenue, "rollup revenue is off"
        assert (self.stream_length, self.pending) == (0, 0), "entries left in the stream"

    @property
    def summary(self) -> str:
        return (
            f"{self.ledger.summary}; stored {self.stored.total()}, lost {len(self.lost)}, "
            f"unexpected {len(self.unexpected)}, duplicates {len(self.duplicates)}, "
            f"rejected {dict(self.rejected)}"
        )


class Stack:
    """Redis, the web process and workers of one deployment in ``root``."""

    def __init__(
        self,
        root: Path,
        database_url: str,
        secret_key: str,
        redis_server: EmbeddedRedis | None = None,
    ) -> None:
        """``redis_server``: one the deployment starts itself (``clicktrail run``); by default
        the stack starts its own."""
        self.root = root
        self.redis_server = redis_server or EmbeddedRedis(root / "redis").start()
        self.settings = Settings(
            var_dir=root / "var",
            database_url=database_url,
            redis_url=self.redis_server.url,
            secret_key=secret_key,
            public_url=f"http://127.0.0.1:{free_port()}",
            batch_size=100,
            batch_max_wait_ms=5,
            claim_idle_ms=1_000,
        )
        self.env = settings_env(self.settings)
        self.redis = connect(self.redis_server.url)
        self.database = Database.connect(database_url)
        self.web: TrackerProcess | None = None
        self.workers: list[WorkerProcess] = []
        self.programme: Programme | None = None
        self.signed_at = int(time.time())  # the postbacks' signatures: one per postback

    @property
    def origin(self) -> str:
        return self.settings.public_url

    async def start_web(self) -> Programme:
        """The web process and, through its management API, a programme to send events to."""
        self.web = await asyncio.to_thread(
            TrackerProcess(self.port, self.env, self.root / "web.log").start
        )
        return await self.make_programme()

    @property
    def port(self) -> int:
        return int(self.origin.rsplit(":", 1)[1])

    async def make_programme(self) -> Programme:
        """A programme to send events to, made through the running web's management API."""
        headers = {"Authorization": f"Bearer {await create_api_key(self.database)}"}
        async with httpx.AsyncClient(base_url=self.origin, timeout=10) as client:
            self.programme = await create_programme(client, headers)
        return self.programme

    async def send(self, numbers: Iterable[int], ledger: Ledger) -> float:
        """Send events ``numbers`` to the web process; return the seconds it took."""
        assert self.programme is not None, "start_web first"
        started = time.monotonic()
        await send(self.origin, self.programme, numbers, ledger)
        return time.monotonic() - started

    async def post_postbacks(
        self, numbers: Iterable[int], ledger: Ledger, copies: int
    ) -> Counter[str]:
        """Post signed postbacks ``numbers``, each ``copies`` times; return the answers."""
        assert self.programme is not None, "start_web first"
        postbacks = [signed_postback(self.programme, n, self.signed_at) for n in numbers]
        return await post_postbacks(self.origin, postbacks, copies, ledger)

    def start_worker(self, module: str = "backend.cli", **env: str) -> None:
        """A worker, ready once its consumer runs (blocking: call it in a thread)."""
        log = self.root / f"worker-{len(self.workers)}.log"
        self.workers.append(WorkerProcess({**self.env, **env}, log, module).start())

    @property
    def live_consumer(self) -> str:
        """The consumer name of the newest worker (the earlier ones were killed)."""
        return self.workers[-1].consumer_name

    async def dead_consumers_pending(self) -> int:
        """Entries still held by consumers other than the newest worker's (dead ones)."""
        info = await self.redis.xpending(self.settings.stream, self.settings.consumer_group)
        live = self.live_consumer.encode()
        return sum(int(c["pending"]) for c in info["consumers"] if c["name"] != live)

    async def dead_consumers(self) -> set[str]:
        """Consumers in the group other than the newest worker's."""
        stream, group = self.settings.stream, self.settings.consumer_group
        consumers = await self.redis.xinfo_consumers(stream, group)
        return {consumer["name"].decode() for consumer in consumers} - {self.live_consumer}

    async def redis_pid(self) -> int:
        return int((await self.redis.info("server"))["process_id"])

    async def kill_redis(self) -> None:
        """SIGKILL the redis-server, as a crash would."""
        os.kill(await self.redis_pid(), signal.SIGKILL)
        self.redis_server.stop()  # reaps the dead child; the socket file stays behind

    def restart_redis(self) -> None:
        self.redis_server.start()  # same directory: the append-only file is read back

    async def backlog(self) -> tuple[int, int]:
        """(entries in the stream, entries delivered and not acknowledged)."""
        length = int(await self.redis.xlen(self.settings.stream))
        try:
            info = await self.redis.xpending(self.settings.stream, self.settings.consumer_group)
        except ResponseError:  # no consumer group yet
            return length, 0
        return length, int(info["pending"])

    async def _backlog_if_up(self) -> tuple[int, int] | None:
        try:
            return await self.backlog()
        except RedisConnectionError:  # its socket not there yet
            return None

    def spooled_bytes(self) -> int:
        return Spool(self.settings.var_dir / "spool").size_bytes()  # the web's spool files

    async def drained(self, within_s: float) -> float:
        """Seconds until the stream and the spool are empty; fail after ``within_s``. A Redis
        restarted a moment ago may not take connections yet: that is not drained either."""
        started = time.monotonic()
        while (await self._backlog_if_up(), self.spooled_bytes()) != ((0, 0), 0):
            if time.monotonic() - started > within_s:
                raise AssertionError(
                    f"not drained after {within_s}s: backlog {await self.backlog()}, "
                    f"spool {self.spooled_bytes()} bytes\n{self.worker_logs()}"
                )
            await asyncio.sleep(0.1)
        return time.monotonic() - started

    async def queued_events(self) -> int:
        """Events in the stream (an entry holds those of one group commit)."""
        entries = await self.redis.xrange(self.settings.stream)
        return sum(entry_size(fields[b"e"]) for _, fields in entries)

    async def stream_keys(self) -> tuple[set[str], set[str]]:
        """Harness keys of the events in the stream, and of those pending among them."""
        entries = {
            entry_id: keys_of(fields[b"e"])
            for entry_id, fields in await self.redis.xrange(self.settings.stream)
        }
        pending = await self.redis.xpending_range(
            self.settings.stream, self.settings.consumer_group, "-", "+", len(entries) or 1
        )
        pending_ids = {item["message_id"] for item in pending}
        in_stream = {key for keys in entries.values() for key in keys}
        return in_stream, {key for entry in pending_ids for key in entries.get(entry, [])}

    async def stored(self) -> Counter[str]:
        async with self.database.session() as session:
            clicks = (await session.scalars(select(Click.sub1).where(Click.sub1 != ""))).all()
            orders = (await session.scalars(select(Conversion.order_id))).all()
        return Counter(key for key in [*clicks, *orders] if key)

    async def audit(self, ledger: Ledger) -> Audit:
        async with self.database.session() as session:
            rollup = (
                await session.execute(
                    select(
                        func.coalesce(
                            func.sum(
                                StatsHourly.clicks
                                + StatsHourly.bot_clicks
                                + StatsHourly.flagged_clicks
                            ),
                            0,
                        ),
                        func.coalesce(func.sum(StatsHourly.conversions), 0),
                        func.coalesce(func.sum(StatsHourly.revenue_minor), 0),
                    )
                )
            ).one()
            revenue = await session.scalar(
                select(func.coalesce(func.sum(Conversion.amount_minor), 0))
            )
            reasons = (await session.scalars(select(RejectedEventRow.reason))).all()
        length, pending = await self.backlog()
        return Audit(
            ledger=ledger,
            stored=await self.stored(),
            stream_length=length,
            pending=pending,
            rollup_clicks=int(rollup[0]),
            rollup_conversions=int(rollup[1]),
            rollup_revenue=int(rollup[2]),
            revenue=int(revenue or 0),
            rejected=Counter(reasons),
        )

    def worker_logs(self, lines: int = 15) -> str:
        return "\n".join(worker.log_tail(lines) for worker in self.workers)

    async def close(self) -> None:
        for process in [*self.workers, *([self.web] if self.web else [])]:
            await asyncio.to_thread(process.stop)
        await self.redis.aclose()
        self.redis_server.stop()
        await self.database.dispose()
