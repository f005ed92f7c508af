"""The server-rendered pages: sign-in, CSRF, autoescaping, CSP, rate limit, sign-out."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from backend.storage.db.engine import Database
from backend.storage.db.models import Conversion
from tests.support import PASSWORD, Programme, add_admin, csrf_token, follow_link, sign_in


async def test_pages_need_a_session(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/")
    assert response.status_code == 302
    assert response.headers["location"] == "/login"


async def test_login_without_csrf_token_is_refused(
    client: AsyncTestClient[Any], database: Database
) -> None:
    await add_admin(database)
    await client.get("/login")
    response = await client.post(
        "/login", data={"email": "admin@example.com", "password": PASSWORD}
    )
    assert response.status_code == 403
    wrong = await client.post(
        "/login",
        data={"email": "admin@example.com", "password": PASSWORD, "_csrf_token": "forged"},
    )
    assert wrong.status_code == 403
    assert (await client.get("/")).status_code == 302


async def test_typed_values_are_escaped_and_pages_carry_a_strict_csp(
    client: AsyncTestClient[Any], database: Database
) -> None:
    hostile = '"><script>alert(1)</script>@x.example'
    token = await csrf_token(client)
    response = await client.post(
        "/login", data={"email": hostile, "password": "nope", "_csrf_token": token}
    )
    assert response.status_code == 400
    assert "<script>alert(1)</script>" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src" not in csp
    assert "unsafe-inline" not in csp


async def test_sign_in_and_out(client: AsyncTestClient[Any], database: Database) -> None:
    await add_admin(database)
    token = await csrf_token(client)
    signed_in = await client.post(
        "/login",
        data={"email": "Admin@Example.com", "password": PASSWORD, "_csrf_token": token},
    )
    assert signed_in.status_code == 302
    session_cookie = client.cookies.get("ct_session")
    assert session_cookie
    assert (await client.get("/")).status_code == 200

    signed_out = await client.post("/logout", data={"_csrf_token": token})
    assert signed_out.status_code == 302
    # the old cookie no longer opens a session: it was deleted on the server
    client.cookies.set("ct_session", session_cookie)
    assert (await client.get("/")).status_code == 302


async def test_login_attempts_are_limited(client: AsyncTestClient[Any], database: Database) -> None:
    await add_admin(database)
    token = await csrf_token(client)
    statuses = [
        (
            await client.post(
                "/login",
                data={"email": "admin@example.com", "password": "wrong", "_csrf_token": token},
            )
        ).status_code
        for _ in range(11)
    ]
    assert statuses == [400] * 10 + [429]
    right = await client.post(
        "/login", data={"email": "admin@example.com", "password": PASSWORD, "_csrf_token": token}
    )
    assert right.status_code == 429


async def test_snippet_is_served_with_etag_and_a_versioned_immutable_copy(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.get("/s.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert "max-age=300" in response.headers["cache-control"]
    etag = response.headers["etag"]
    not_modified = await client.get("/s.js", headers={"if-none-match": etag})
    assert not_modified.status_code == 304
    version = etag.strip('"')
    pinned = await client.get(f"/s/{version}.js")
    assert "immutable" in pinned.headers["cache-control"]
    assert pinned.content == response.content
    assert (await client.get("/s/000000000000.js")).status_code == 404


async def test_install_page_gives_tags_pinned_with_a_matching_sri_hash(
    client: AsyncTestClient[Any], database: Database, programme: Programme
) -> None:
    await client.patch(
        f"/api/v1/merchants/{programme.merchant['id']}",
        json={"name": "<img src=x onerror=alert(1)>"},
        headers=programme.headers,
    )
    await sign_in(client, database)
    page = await client.get("/install")
    assert page.status_code == 200

    text = html.unescape(page.text)
    match = re.search(r'src="http://testserver.local(/s/\w+\.js)" integrity="(sha384-[^"]+)"', text)
    assert match is not None
    served = await client.get(match.group(1))
    digest = base64.b64encode(hashlib.sha384(served.content).digest()).decode()
    assert match.group(2) == f"sha384-{digest}"
    assert f'data-merchant="{programme.merchant["key"]}"' in text
    assert f'data-partner="{programme.partner["key"]}"' in text
    assert "<img src=x onerror=alert(1)>" not in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text


async def test_install_page_samples_an_amount_the_merchants_currency_accepts(
    client: AsyncTestClient[Any], database: Database, programme: Programme, consumer: Any
) -> None:
    yen = await client.post(
        "/api/v1/merchants",
        json={"name": "Tea", "currency": "JPY", "domains": ["tea.example"]},
        headers=programme.headers,
    )
    await sign_in(client, database)
    text = html.unescape((await client.get("/install")).text)
    assert "amount: '49.90', currency: 'EUR'" in text
    assert "amount: '4990', currency: 'JPY'" in text
    tag = html.unescape(text)  # the tag's own &amp; as a browser would read it
    sample = re.search(rf"/p\.gif\?m={yen.json()['key']}&oid=ORDER_ID&amt=(\w+)&cur=JPY", tag)
    assert sample is not None
    # The sample as it stands is a conversion the pixel takes.
    await client.get("/p.gif", params={"m": yen.json()["key"], "oid": "S-1", "amt": sample[1]})
    await consumer.drain()
    async with database.session() as session:
        stored = await session.scalar(
            select(Conversion.amount_minor).where(Conversion.order_id == "S-1")
        )
    assert stored == 4990


async def test_quality_page_shows_what_was_not_billed_and_why(
    client: AsyncTestClient[Any], database: Database, programme: Programme, consumer: Any
) -> None:
    await follow_link(client, programme.link["code"])
    await follow_link(client, programme.link["code"])  # the same visitor again within 10 s
    await follow_link(client, programme.link["code"], {"User-Agent": "curl/8.5.0"})
    await client.get("/p.gif", params={"m": programme.merchant["key"], "amt": "-1"})
    await consumer.drain()

    await sign_in(client, database)
    page = await client.get("/quality")
    assert page.status_code == 200
    assert '<strong id="quality-clicks">3</strong>' in page.text
    rows = dict(
        re.findall(r'<th scope="row">[^<]*<code>([^<]+)</code></th><td>(\d+)</td>', page.text)
    )
    assert rows["duplicate"] == "1"
    assert rows["negative_amount"] == "1"
    assert sum(int(count) for flag, count in rows.items() if flag.startswith("bot:")) >= 1


async def test_stylesheet_is_served_beside_the_snippet_routes(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.get("/static/app.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert ".tiles" in response.text
