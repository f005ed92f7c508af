"""Errors met in the browser are pages in the app's layout with a way back; programs keep the
API's JSON answers."""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import AsyncTestClient

from backend.storage.db.engine import Database
from tests.support import Programme, add_user, sign_in

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def assert_page(text: str, title: str) -> None:
    assert '<link rel="stylesheet" href="/static/app.css">' in text
    assert f"<h1>{title}</h1>" in text
    assert '<a href="/">Back to the overview</a>' in text


async def test_bad_filter_values_and_dates_answer_a_page_with_a_way_back(
    client: AsyncTestClient[Any], database: Database
) -> None:
    await sign_in(client, database)
    for params, message in (
        ({"range": "custom", "from": "2026-02-30", "to": "2026-03-01"}, "must be a date like"),
        ({"partner": "abc"}, "partner must be a numeric id"),
        ({"tz": "Mars/Olympus"}, "unknown time zone"),
    ):
        page = await client.get("/", params=params, headers=HTML)
        assert page.status_code == 400
        assert page.headers["content-type"].startswith("text/html")
        assert_page(page.text, "This cannot be shown")
        assert message in page.text
        assert re.search(r'<a class="button" href="/">Show this page', page.text)


async def test_unknown_pages_are_pages(
    client: AsyncTestClient[Any], database: Database, programme: Programme
) -> None:
    await sign_in(client, database)
    for path in ("/breakdown/nope", "/no/such/page", "/conversions/999999"):
        page = await client.get(path, headers=HTML)
        assert page.status_code == 404, path
        assert_page(page.text, "This page does not exist")
    await client.post("/logout", data={"_csrf_token": client.cookies.get("csrftoken", "")})

    await add_user(database, "partner@example.com", "partner", programme.partner["id"])
    await sign_in(client, database, "partner@example.com")
    # Admin pages do not exist for a partner (as another partner's objects do not).
    page = await client.get("/admin/merchants", headers=HTML)
    assert page.status_code == 404
    assert_page(page.text, "This page does not exist")


async def test_programs_keep_their_json(client: AsyncTestClient[Any], programme: Programme) -> None:
    for path, headers in (
        ("/no/such/page", {"Accept": "application/json"}),
        ("/api/v1/nope", HTML),
        ("/api/v1/partners/999999", {**HTML, **programme.headers}),
    ):
        answer = await client.get(path, headers=headers)
        assert answer.status_code == 404, path
        assert answer.json()["status_code"] == 404
