"""The app's security headers on every answer of the Litestar app and on the unknown-link page,
none on the pixel, the redirect and the beacon."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from backend.web.security_headers import SECURITY_HEADERS
from tests.support import BROWSER_HEADERS, Programme

NAMES = {name.decode() for name, _ in SECURITY_HEADERS}


def assert_secured(headers: Any, where: str) -> None:
    for name, value in SECURITY_HEADERS:
        if name == b"content-security-policy":
            assert "frame-ancestors 'none'" in headers[name.decode()], where
        else:
            assert headers[name.decode()] == value.decode(), where


async def test_the_unknown_link_page_carries_the_apps_security_headers(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.get("/c/nosuchcode", headers=BROWSER_HEADERS)
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "This link does not exist" in response.text
    assert_secured(response.headers, "/c/nosuchcode")
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


async def test_every_answer_of_the_app_carries_them(client: AsyncTestClient[Any]) -> None:
    for path in (
        "/login",
        "/schema",
        "/schema/swagger",
        "/schema/openapi.json",
        "/schema/no-such-page",
        "/no/such/page",
        "/api/v1/merchants",
        "/static/app.css",
    ):
        response = await client.get(path)
        assert_secured(response.headers, path)
    login = await client.get("/login")
    assert "script-src" not in login.headers["content-security-policy"]


async def test_the_pixel_the_redirect_and_the_beacon_stay_lean(
    client: AsyncTestClient[Any], programme: Programme
) -> None:
    pixel = await client.get("/p.gif", params={"m": programme.merchant["key"], "oid": "L1"})
    redirect = await client.get(f"/c/{programme.link['code']}", headers=BROWSER_HEADERS)
    beacon = await client.post("/e", json={"m": programme.merchant["key"], "events": [{}]})
    assert (pixel.status_code, redirect.status_code, beacon.status_code) == (200, 302, 202)
    for response in (pixel, redirect, beacon):
        assert not NAMES & response.headers.keys(), response.url
