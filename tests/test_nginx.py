"""The repository's ``nginx.conf``, for real: Debian's nginx in front of the real app.

A configuration that is only a sample rots unnoticed, and nginx's behaviour (which header wins,
what a limited request gets, what ends up in a log) is easy to get wrong by reading alone. So
the file is run as shipped, with two substitutions only, both forced by the test machine: the
``listen`` port (80 needs root and may be taken) and the upstream ``server`` address (the app
listens on a free port). Everything else, including relative paths resolved against ``-p``, is
the file a deployment runs (``backend.tooling.bench.nginx`` adapts and runs it, for these tests and
the load benchmark). The app is ``python -m backend.cli web`` configured only through
its environment, with the default ``TRUSTED_PROXIES`` (loopback), as the README deploys it.

Client addresses. Linux routes all of 127.0.0.0/8 to the loopback interface, so a test client
can connect from any of it (httpx's ``local_address``). nginx connects to the app from
127.0.0.1, whose stored prefix would be 127.0.0.0/24; a client at 127.1.2.3 has the prefix
127.1.2.0/24, so a stored prefix tells the visitor apart from the proxy. Each test uses its own
client addresses because nginx's rate-limit state lasts as long as the module's nginx does.

Skipped without ``/usr/sbin/nginx`` on a workstation; a failure in CI (``CI`` set).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from backend.core.settings import Settings
from backend.domain.visitor import network_prefix
from backend.storage.db.engine import Database
from backend.storage.db.models import Click, Conversion
from backend.storage.redis_client import connect
from backend.storage.redis_server import EmbeddedRedis
from backend.tooling.bench.nginx import (
    CONF,
    NGINX,
    REPO,
    NginxProcess,
    check_config,
    make_prefix,
    nginx_command,
)
from backend.tooling.bench.processes import (
    ChildProcess,
    TrackerProcess,
    accepting,
    free_port,
    settings_env,
)
from backend.web.ingest.routes import GIF, MAX_BODY
from backend.worker.consumer import StreamConsumer
from backend.worker.main import build_consumer
from tests.browser.servers import closed_port
from tests.support import BROWSER_HEADERS, follow_link, make_programme, require_binary

SNIPPET = REPO / "static" / "s.js"
SECRET = "nginx-tests-secret-key-long-enough-0123456789"
# More connections do not make httpx send faster; past ~10 its pool costs more than it gives.
FLOOD_CONNECTIONS = 10

# The visitor of the journey, and an address it claims to be in a forged header.
VISITOR = "127.1.2.3"
VISITOR_PREFIX = "127.1.2.0/24"
FORGED = "203.0.113.9"


@pytest.fixture(scope="module")
def nginx_binary() -> Path:
    """Debian's nginx."""
    return require_binary(NGINX, "nginx")


@dataclass(frozen=True)
class Edge:
    """nginx in front of the app; ``settings`` are the app's, for the in-test consumer."""

    nginx: NginxProcess
    settings: Settings

    @property
    def origin(self) -> str:
        return self.nginx.origin


@pytest.fixture(scope="module")
def edge(
    nginx_binary: Path,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
    redis_server: EmbeddedRedis,
) -> Iterator[Edge]:
    """The app on a free port and nginx in front of it, once for the module (each takes a
    second or so to start)."""
    root = tmp_path_factory.mktemp("edge")
    shutil.copy(sqlite_template, root / "clicktrail.db")
    nginx_port, app_port = free_port(), free_port()
    settings = Settings(
        var_dir=root / "var",
        database_url=f"sqlite+aiosqlite:///{root / 'clicktrail.db'}",
        redis_url=redis_server.url,
        secret_key=SECRET,  # the consumer checks the signatures of the app's click ids
        public_url=f"http://127.0.0.1:{nginx_port}",  # tracking URLs point at nginx
        batch_max_wait_ms=0,
    )
    env = settings_env(settings)
    app = TrackerProcess(app_port, env, root / "web.log").start()
    try:
        nginx = NginxProcess(make_prefix(root / "nginx"), nginx_port, [app_port]).start()
        try:
            yield Edge(nginx, settings)
        finally:
            nginx.stop()
    finally:
        app.stop()


@dataclass(frozen=True)
class Store:
    database: Database
    consumer: StreamConsumer


@pytest.fixture
async def store(edge: Edge) -> AsyncIterator[Store]:
    """The app's database and the worker's consumer, run in the test after the requests.

    Redis is emptied first: the server is the session's, and other tests leave streams in it.
    """
    redis = connect(edge.settings.redis_url)
    await redis.flushall()
    await redis.aclose()
    database = Database.connect(edge.settings.database_url)
    consumer = build_consumer(edge.settings, database, edge.settings.redis_url)
    await consumer.ensure_group()
    yield Store(database, consumer)
    await consumer.close()
    await database.dispose()


def client_from(edge: Edge, address: str, connections: int = 10) -> httpx.AsyncClient:
    """A client whose connections come from ``address`` (any 127.x.y.z works on Linux)."""
    transport = httpx.AsyncHTTPTransport(
        local_address=address, limits=httpx.Limits(max_connections=connections)
    )
    return httpx.AsyncClient(
        base_url=edge.origin, transport=transport, timeout=10.0, follow_redirects=False
    )


def at_least(count: int) -> Callable[[list[str]], bool]:
    return lambda lines: len(lines) >= count


@dataclass(frozen=True)
class Flood:
    """What one address's flood got: the answers, nginx's log lines of them, the duration."""

    responses: list[httpx.Response]
    lines: list[str]
    elapsed_s: float

    @property
    def rejected(self) -> list[str]:
        return [line for line in self.lines if " limit=REJECTED " in line]

    def assert_limited_by(self, burst: int, rate_per_s: int) -> None:
        """The bucket let through the whole burst and no more than the rate refilled: the
        first request, the burst, the rate over the flood's duration, one for rounding."""
        passed = len(self.lines) - len(self.rejected)
        most = 1 + burst + int(rate_per_s * self.elapsed_s) + 1
        assert burst + 1 <= passed <= most, (passed, self.elapsed_s)


async def flood(
    nginx: NginxProcess,
    prefix: str,
    send: Callable[[int], Awaitable[httpx.Response]],
    batch: int,
    rounds: int = 10,
) -> Flood:
    """Rounds of ``batch`` concurrent requests until nginx has rejected one.

    One round is meant to be enough, but how fast requests arrive depends on the machine:
    while the app answers slowly the bucket refills, so more rounds follow instead of a
    flaky count. nginx's own log line (``limit=REJECTED``) says which requests it refused.
    """
    responses: list[httpx.Response] = []
    started = time.monotonic()
    for _ in range(rounds):
        first = len(responses)
        responses += await asyncio.gather(*(send(first + index) for index in range(batch)))
        elapsed = time.monotonic() - started
        lines = await asyncio.to_thread(
            nginx.wait_for_access_lines, prefix, at_least(len(responses))
        )
        result = Flood(list(responses), lines, elapsed)
        if result.rejected:
            return result
    pytest.fail(f"{len(responses)} requests in {elapsed:.1f} s and nginx limited none")


def test_config_as_shipped_passes_nginx_t(nginx_binary: Path, tmp_path: Path) -> None:
    """The unmodified file, as a deployment starts it: relative paths against the prefix."""
    check_config(make_prefix(tmp_path), CONF)


async def test_click_and_conversion_through_nginx_count_under_the_visitors_prefix(
    edge: Edge, store: Store
) -> None:
    """The whole journey through nginx; the prefix the quality windows count is the visitor's,
    not nginx's.

    The app believes X-Forwarded-For from loopback, and here the visitor is on loopback too
    (127.1.2.3), so the app would walk past the visitor's own address to whatever the visitor
    put to its left. nginx sets the header to the connecting address instead of appending, so
    a forged ``X-Forwarded-For: 203.0.113.9`` must not reach the app: both clicks, the one with
    the forged header included, and both conversions must count under 127.1.2.0/24 in Redis
    (the database keeps no prefix), which is neither nginx's own prefix (127.0.0.0/24) nor the
    forged one, and both clicks are one visitor.
    """
    async with client_from(edge, VISITOR) as visitor:
        programme = await make_programme(visitor, store.database)  # the API, through nginx
        code = programme.link["code"]
        merchant_key = programme.merchant["key"]
        plain_click = await follow_link(visitor, code)
        forged_click = await follow_link(
            visitor, code, BROWSER_HEADERS | {"X-Forwarded-For": FORGED}
        )

        pixel = await visitor.get(
            "/p.gif",
            params={"m": merchant_key, "oid": "NGX-1", "amt": "49.90", "cur": "EUR",
                    "clk": plain_click},
            headers=BROWSER_HEADERS | {"X-Forwarded-For": FORGED},
        )  # fmt: skip
        assert pixel.status_code == 200
        assert pixel.content == GIF  # the app's 43 bytes
        assert pixel.headers["content-type"] == "image/gif"
        assert "no-store" in pixel.headers["cache-control"]

        beacon = await visitor.post(
            "/e",
            json={"m": merchant_key, "events": [
                {"t": "conversion", "oid": "NGX-2", "amt": "20.00", "cur": "EUR",
                 "clk": forged_click},
            ]},
            headers=BROWSER_HEADERS,
        )  # fmt: skip
        assert beacon.status_code == 202, beacon.text
        assert beacon.json()["accepted"] == 1

        await store.consumer.drain()
        async with store.database.session() as session:
            visitors = dict(
                (await session.execute(select(Click.click_id, Click.visitor_hash))).all()
            )
            orders = (await session.scalars(select(Conversion.order_id))).all()
        assert set(orders) == {"NGX-1", "NGX-2"}
        assert visitors.keys() == {plain_click, forged_click}
        assert visitors[plain_click] == visitors[forged_click]
        redis = connect(edge.settings.redis_url)
        try:
            click_prefixes = {
                prefix
                async for key in redis.scan_iter("ct:n:*")
                async for prefix, _ in redis.hscan_iter(key)
            } - {b""}  # the field that keeps the hash a hash table
            conversion_windows = [key async for key in redis.scan_iter("ct:w:x:*")]
        finally:
            await redis.aclose()
        assert click_prefixes == {VISITOR_PREFIX.encode()}
        assert conversion_windows == [
            f"ct:w:x:{programme.merchant['id']}:{VISITOR_PREFIX}".encode()
        ]

        stats = await visitor.get("/api/v1/stats", headers=programme.headers)
        totals = stats.json()["totals"]
        # Clicks are not compared: the second one of the same visitor may count as a duplicate.
        assert (totals["conversions"], totals["revenue_minor"]) == (2, 6990)

    # The access log has the visitor's network, never the visitor's address or the forged one.
    lines = await asyncio.to_thread(
        edge.nginx.wait_for_access_lines,
        VISITOR_PREFIX,
        lambda lines: any(" /api/v1/stats " in line for line in lines),
    )
    assert any(f'"GET /c/{code} HTTP/1.1" 302 ' in line for line in lines)
    assert any('"GET /p.gif HTTP/1.1" 200 ' in line for line in lines)
    assert all(merchant_key not in line for line in lines), "query strings stay out of the log"
    logs = edge.nginx.logs()
    assert VISITOR not in logs
    assert FORGED not in logs


async def test_nginx_request_id_reaches_the_app_and_its_answer(edge: Edge) -> None:
    """nginx sends its ``$request_id`` (a client's own X-Request-ID is replaced), the app
    echoes it, and nginx's access line of the request carries the same id."""
    async with client_from(edge, "127.10.0.1") as client:
        answer = await client.get("/healthz", headers={"X-Request-ID": "forged-by-client"})
    assert answer.status_code == 200
    request_id = answer.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), request_id
    lines = await asyncio.to_thread(
        edge.nginx.wait_for_access_lines, "127.10.0.0/24", lambda lines: len(lines) >= 1
    )
    assert any(f" id={request_id} " in line and "GET /healthz" in line for line in lines), lines


async def test_snippet_and_static_files_are_served_by_nginx_compressed_and_cached(
    edge: Edge,
) -> None:
    """``/s.js``, ``/p.js`` and ``/static/`` come from the ``static/`` directory, not the app.

    Told apart by the ETag: nginx's is the file's mtime and size in hex, the app's is a hash
    of the content. gzip weakens an ETag (``W/``), since the bytes sent differ.
    """
    body = SNIPPET.read_bytes()
    stat = SNIPPET.stat()
    etag = f'"{int(stat.st_mtime):x}-{stat.st_size:x}"'
    async with client_from(edge, "127.4.0.1") as client:
        compressed = await client.get("/s.js", headers={"Accept-Encoding": "gzip"})
        assert compressed.status_code == 200
        assert compressed.headers["content-encoding"] == "gzip"
        assert compressed.content == body  # httpx undoes the gzip
        assert compressed.num_bytes_downloaded < len(body)
        assert "Accept-Encoding" in compressed.headers["vary"]
        assert compressed.headers["etag"] == f"W/{etag}"
        assert compressed.headers["cache-control"] == "public, max-age=300"
        assert compressed.headers["content-type"] == "text/javascript; charset=utf-8"
        assert compressed.headers["x-content-type-options"] == "nosniff"
        assert compressed.headers["access-control-allow-origin"] == "*"
        assert compressed.headers["server"] == "nginx"  # server_tokens off: no version

        plain = await client.get("/s.js", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert plain.headers["etag"] == etag
        assert plain.headers["content-length"] == str(len(body))
        unchanged = await client.get(
            "/s.js", headers={"Accept-Encoding": "identity", "If-None-Match": etag}
        )
        assert unchanged.status_code == 304

        # p.js, the publisher half s.js loads pinned by its SRI hash (in the query too), is
        # served the same way, CORS and all.
        publisher = REPO / "static" / "p.js"
        p_stat = publisher.stat()
        half = await client.get("/p.js?sha256-x+y/z=", headers={"Accept-Encoding": "gzip"})
        assert half.status_code == 200
        assert half.content == publisher.read_bytes()
        assert half.headers["etag"] == f'W/"{int(p_stat.st_mtime):x}-{p_stat.st_size:x}"'
        assert half.headers["cache-control"] == "public, max-age=300"
        assert half.headers["content-type"] == "text/javascript; charset=utf-8"
        assert half.headers["access-control-allow-origin"] == "*"
        assert half.headers["cross-origin-resource-policy"] == "cross-origin"

        # The versioned copy is the app's, compressed on the way and cached for a year.
        version = hashlib.sha256(body).hexdigest()[:12]
        pinned = await client.get(f"/s/{version}.js", headers={"Accept-Encoding": "gzip"})
        assert pinned.status_code == 200
        assert pinned.content == body
        assert pinned.headers["content-encoding"] == "gzip"
        assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"

        css = await client.get("/static/app.css", headers={"Accept-Encoding": "gzip"})
        assert css.status_code == 200
        assert css.content == (REPO / "static" / "app.css").read_bytes()
        assert css.headers["content-encoding"] == "gzip"
        assert css.headers["content-type"] == "text/css; charset=utf-8"
        assert css.headers["cache-control"] == "public, max-age=3600"
        assert css.headers["x-content-type-options"] == "nosniff"

        missing = await client.get("/static/missing.css")
        assert missing.status_code == 404
        assert "cache-control" not in missing.headers  # a 404 is not cached for an hour

        # /metrics is for the host only: this client is on loopback, but not 127.0.0.1.
        assert (await client.get("/metrics")).status_code == 403
    async with client_from(edge, "127.0.0.1") as host:
        assert (await host.get("/metrics")).status_code == 200


async def test_beacon_flood_gets_429_while_other_addresses_pass(edge: Edge, store: Store) -> None:
    """Past the burst (50 at 10 r/s) one address's beacons get nginx's 429; another address,
    and the same one a moment later, get through: it is a rate per address, not a ban."""
    flooder, bystander = "127.5.0.1", "127.5.0.2"
    async with client_from(edge, "127.0.0.1") as admin:
        programme = await make_programme(admin, store.database)
    beacon = {"m": programme.merchant["key"], "events": [{"t": "conversion", "amt": "1.00"}]}

    async with client_from(edge, flooder, connections=FLOOD_CONNECTIONS) as client:

        async def send(index: int) -> httpx.Response:
            events = [{"t": "conversion", "oid": f"FLOOD-{index}", "amt": "1.00"}]
            return await client.post("/e", json={**beacon, "events": events})

        result = await flood(edge.nginx, "127.5.0.0/24", send, batch=100)
        result.assert_limited_by(burst=50, rate_per_s=10)
        statuses = [response.status_code for response in result.responses]
        assert set(statuses) == {202, 429}, statuses
        assert statuses.count(429) == len(result.rejected)
        assert all('"POST /e HTTP/1.1" 429 ' in line for line in result.rejected)
        assert all(" upstream=-/- " in line for line in result.rejected)  # the app never saw it
        limited = next(response for response in result.responses if response.status_code == 429)
        assert limited.json()["errors"][0]["reason"] == "rate_limited"
        assert limited.headers["retry-after"] == "1"
        assert limited.headers["content-type"] == "application/json"

        async with client_from(edge, bystander) as other:
            assert (await other.post("/e", json=beacon)).status_code == 202
        await asyncio.sleep(0.5)  # the bucket drains at 10 r/s
        assert (await client.post("/e", json=beacon)).status_code == 202

    await asyncio.to_thread(
        edge.nginx.wait_for_access_lines,
        "127.5.0.0/24",
        lambda lines: len(lines) >= len(result.lines) + 2,
    )
    logs = edge.nginx.logs()
    assert flooder not in logs
    assert bystander not in logs


async def test_pixel_flood_is_answered_with_the_gif_by_nginx(edge: Edge) -> None:
    """The pixel never fails the browser: past the burst (200 at 20 r/s) nginx answers a
    43-byte transparent GIF itself; the excess is not recorded, and the access log says so."""
    async with client_from(edge, "127.6.0.1", connections=FLOOD_CONNECTIONS) as client:

        async def send(index: int) -> httpx.Response:
            return await client.get("/p.gif", params={"m": "mk_unknown", "oid": str(index)})

        result = await flood(edge.nginx, "127.6.0.0/24", send, batch=300)
    result.assert_limited_by(burst=200, rate_per_s=20)
    assert {response.status_code for response in result.responses} == {200}
    # The app's GIF, or nginx's empty_gif: another 43-byte transparent GIF.
    assert {(len(response.content), response.content[:6]) for response in result.responses} == {
        (43, b"GIF89a")
    }
    assert all("no-store" in response.headers["cache-control"] for response in result.responses)
    assert all('"GET /p.gif HTTP/1.1" 200 43 ' in line for line in result.rejected)
    assert all(" upstream=-/- " in line for line in result.rejected)  # the app never saw it
    assert "127.6.0.1" not in edge.nginx.logs()


async def test_click_flood_gets_a_page_that_retries(edge: Edge) -> None:
    """Past the burst (200 at 20 r/s) a tracking link answers 429 with a page that reloads the
    same URL after two seconds (a person arrives late instead of at a dead link), not cached."""
    async with client_from(edge, "127.7.0.1", connections=FLOOD_CONNECTIONS) as client:

        async def send(index: int) -> httpx.Response:
            return await client.get(f"/c/nosuchcode{index}", headers=BROWSER_HEADERS)

        result = await flood(edge.nginx, "127.7.0.0/24", send, batch=300)
    result.assert_limited_by(burst=200, rate_per_s=20)
    statuses = [response.status_code for response in result.responses]
    assert set(statuses) == {404, 429}, statuses  # 404: the app's page for an unknown code
    assert statuses.count(429) == len(result.rejected)
    retry = next(response for response in result.responses if response.status_code == 429)
    assert retry.headers["content-type"] == "text/html; charset=utf-8"
    assert retry.headers["retry-after"] == "2"
    assert retry.headers["cache-control"] == "no-store"
    assert '<meta http-equiv="refresh" content="2">' in retry.text
    assert "127.7.0.1" not in edge.nginx.logs()


async def test_body_over_64_kib_is_refused_by_nginx(edge: Edge) -> None:
    """nginx's cap equals the app's: 64 KiB reaches the app, one byte more gets nginx's 413
    without the app seeing it; the error log, which would name the client, stays empty."""
    async with client_from(edge, "127.8.0.1") as client:
        at_cap = await client.post("/e", content=b"x" * MAX_BODY)
        assert at_cap.status_code == 400  # the app's answer: not JSON, but not too large
        assert at_cap.json()["errors"][0]["field"] == "body"

        over = await client.post("/e", content=b"x" * (MAX_BODY + 1))
        assert over.status_code == 413
        assert over.headers["content-type"] == "text/html"  # nginx's page; the app's is JSON
        assert "413 Request Entity Too Large" in over.text

    lines = await asyncio.to_thread(
        edge.nginx.wait_for_access_lines, "127.8.0.0/24", lambda lines: len(lines) >= 2
    )
    assert any('"POST /e HTTP/1.1" 413 ' in line and " upstream=-/- " in line for line in lines)
    assert "127.8.0.1" not in edge.nginx.logs()
    assert edge.nginx.error_log() == ""


def test_pixel_still_answers_the_gif_when_the_app_is_down(
    nginx_binary: Path, tmp_path: Path
) -> None:
    """With the upstream refusing connections, the pixel still gets a GIF (from nginx) and
    the snippet is still served; a tracking link can only fail (502). The error log, where
    nginx would name the client of each failed connection, stays without addresses."""
    with closed_port() as dead:
        nginx = NginxProcess(make_prefix(tmp_path), free_port(), [dead]).start()
        try:
            transport = httpx.HTTPTransport(local_address="127.9.0.1")
            with httpx.Client(base_url=nginx.origin, transport=transport) as client:
                pixel = client.get("/p.gif", params={"m": "mk_x", "oid": "DOWN-1"})
                assert pixel.status_code == 200
                assert len(pixel.content) == 43
                assert pixel.content.startswith(b"GIF89a")
                assert "no-store" in pixel.headers["cache-control"]
                assert client.get("/s.js").status_code == 200
                assert client.get("/c/somecode").status_code == 502
            lines = nginx.wait_for_access_lines("127.9.0.0/24", lambda lines: len(lines) >= 3)
            assert any(
                '"GET /p.gif HTTP/1.1" 200 43 ' in line and " upstream=502/" in line
                for line in lines
            )
            assert "127.9.0.1" not in nginx.logs()
            assert nginx.error_log() == ""
        finally:
            nginx.stop()


# Addresses as nginx prints them (it shortens only runs of two or more zero groups): IPv4,
# IPv4-mapped IPv6, and IPv6 with the "::" at every position relative to the /48 boundary.
PROBE_ADDRESSES = [
    "203.0.113.9", "10.0.0.1", "198.51.100.254", "::ffff:192.0.2.1",
    "2001:db8:abcd:12::1", "2001:db8::1", "2001:db8:0:1::5", "2001::1", "::1", "::",
    "fe80::1:2", "2a00:1450:4001:82b::200e", "2001:db8:1:2:3:4:5:6", "0:1:2:3:4:5:6:7",
    "0:0:1:2:3:4:5:6", "1:0:2:3:4:5:6:7", "1:0:0:2:3:4:5:6", "1:2:0:0:3:4:5:6",
    "::1.2.3.4", "::1:2:3:4:5", "2001:DB8:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF",
]  # fmt: skip


def test_log_prefix_map_gives_the_apps_prefix_for_every_address_form(
    nginx_binary: Path, tmp_path: Path
) -> None:
    """The ``map`` that anonymises the access log, checked against the app's own
    ``network_prefix`` for IPv4 and every way nginx writes an IPv6 address.

    Loopback offers no IPv6 variety, so the map block is lifted out of nginx.conf into a probe
    server whose $remote_addr is set by the realip module from a request header, and which
    answers with the mapped value.
    """
    found = re.search(
        r"^\s*map \$remote_addr \$client_prefix \{.*?^\s*\}$", CONF.read_text(), re.M | re.S
    )
    assert found, "nginx.conf has no map for $client_prefix"
    port = free_port()
    prefix = make_prefix(tmp_path)
    conf = prefix / "probe.conf"
    conf.write_text(
        "pid var/probe.pid; error_log stderr crit; events {}\n"
        "http {\n"
        "  client_body_temp_path var/b; proxy_temp_path var/p; fastcgi_temp_path var/f;\n"
        "  uwsgi_temp_path var/u; scgi_temp_path var/s; access_log off;\n"
        f"{found.group(0)}\n"
        f"  server {{ listen 127.0.0.1:{port}; set_real_ip_from 127.0.0.0/8;\n"
        "    real_ip_header X-Probe-Address; location / { return 200 $client_prefix; } }\n"
        "}\n"
    )
    check_config(prefix, conf)
    probe_nginx = ChildProcess(
        "probe nginx", nginx_command(prefix, conf), prefix / "probe.log", accepting(port)
    )
    with probe_nginx, httpx.Client(base_url=f"http://127.0.0.1:{port}") as probe:
        for address in PROBE_ADDRESSES:
            mapped = probe.get("/", headers={"X-Probe-Address": address}).text
            expected = ipaddress.ip_network(network_prefix(ipaddress.ip_address(address)))
            assert ipaddress.ip_network(mapped) == expected, (address, mapped)
