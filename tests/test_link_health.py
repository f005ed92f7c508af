"""Link health checks against a real local HTTP server, and their refusal of addresses that are
not public (SSRF), decided after DNS resolution."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from backend.core.settings import LOOPBACK, load_settings
from backend.domain.affiliate.link_health import check_links, check_url, refusal
from backend.storage.db.engine import Database
from tests.support import create_api_key, create_programme, post_json


class Destination(BaseHTTPRequestHandler):
    """A shop's pages: each path answers as its name says."""

    seen: list[str] = []

    def _answer(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        routes: dict[str, tuple[int, dict[str, str]]] = {
            "/ok": (200, {}),
            "/gone": (404, {}),
            "/to-ok": (302, {"Location": "/ok"}),
            "/to-private": (302, {"Location": "http://10.0.0.1/admin"}),
            "/no-head": (405 if self.command == "HEAD" else 200, {}),
        }
        if self.path == "/slow":
            time.sleep(2)
        status, headers = routes.get(self.path, (200, {}))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def shop() -> Iterator[str]:
    Destination.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Destination)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("address", "kind"),
    [("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.10", "private"),
     ("172.16.5.4", "private"), ("169.254.169.254", "link-local"), ("224.0.0.1", "multicast"),
     ("240.0.0.1", "reserved"), ("0.0.0.0", "unspecified"), ("::1", "loopback"),  # noqa: S104
     ("fe80::1", "link-local"), ("fc00::1", "private"), ("::ffff:127.0.0.1", "loopback"),
     ("100.64.0.1", "not a public"), ("ff02::1", "multicast")],
)  # fmt: skip
def test_addresses_that_are_not_public_are_refused(address: str, kind: str) -> None:
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None
    assert kind in reason


def test_public_and_explicitly_allowed_addresses_may_be_fetched() -> None:
    assert refusal(ipaddress.ip_address("93.184.215.14")) is None
    assert refusal(ipaddress.ip_address("2606:4700::1111")) is None
    assert refusal(ipaddress.ip_address("127.0.0.1"), LOOPBACK) is None
    allowed = load_settings({"CLICKTRAIL_LINK_CHECK_ALLOW": "127.0.0.0/8"}).link_check_allow
    assert allowed == (ipaddress.ip_network("127.0.0.0/8"),)
    assert load_settings({}).link_check_allow == ()


async def test_loopback_is_refused_after_resolution_and_never_contacted(shop: str) -> None:
    port = shop.rsplit(":", 1)[1]
    by_address = await check_url(f"{shop}/ok")
    by_name = await check_url(f"http://localhost:{port}/ok")
    assert not by_address.ok
    assert by_address.detail == "refused: 127.0.0.1 is a loopback address"
    assert not by_name.ok
    assert by_name.detail.startswith("refused: localhost resolves to ")
    assert by_name.detail.endswith("is a loopback address")
    assert Destination.seen == []


async def test_health_check_marks_each_active_link_ok_or_broken(
    client: AsyncTestClient[Any], database: Database, shop: str
) -> None:
    headers = {"Authorization": f"Bearer {await create_api_key(database)}"}
    programme = await create_programme(
        client, headers, domains=["127.0.0.1"], destination_url=f"{shop}/ok"
    )
    paths = ["/gone", "/to-ok", "/to-private", "/no-head", "/slow", "/paused"]
    links = {"/ok": programme.link}
    for path in paths:
        body = {
            "partner_id": programme.partner["id"],
            "campaign_id": programme.campaign["id"],
            "destination_url": f"{shop}{path}",
        }
        links[path] = await post_json(client, "/api/v1/links", body, headers)
    await client.patch(
        f"/api/v1/links/{links['/paused']['id']}", json={"status": "paused"}, headers=headers
    )

    counts = await check_links(database, allowed=LOOPBACK, timeout_s=1)

    assert counts == {"ok": 3, "broken": 3}
    found = {}
    for path, link in links.items():
        out = (await client.get(f"/api/v1/links/{link['id']}", headers=headers)).json()
        found[path] = (out["health"], out["health_detail"], out["last_checked_at"] is not None)
    assert found == {
        "/ok": ("ok", "HTTP 200", True),
        "/gone": ("broken", "HTTP 404", True),
        "/to-ok": ("ok", "HTTP 200", True),
        "/to-private": (
            "broken",
            "refused: 10.0.0.1 is a private address",
            True,
        ),
        "/no-head": ("ok", "HTTP 200", True),
        "/slow": ("broken", "no answer within 1 s", True),
        "/paused": (None, "", False),
    }
    assert "GET /no-head" in Destination.seen  # HEAD refused, GET decided
    assert not any("/paused" in request for request in Destination.seen)
