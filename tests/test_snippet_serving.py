"""The two snippet files as the app serves them: ``/s.js`` pins ``/p.js``, which it loads on
publisher pages with that SRI hash in CORS mode (in a browser: tests/browser/test_snippet.py)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

STATIC = Path(__file__).resolve().parents[1] / "static"


async def test_publisher_half_is_served_for_cors_loads_and_pinned_by_the_snippet(
    client: AsyncTestClient[Any],
) -> None:
    """A browser runs p.js only if it comes with ``Access-Control-Allow-Origin`` and its bytes
    match the hash in s.js; the hash s.js puts in the query changes nothing on the server."""
    snippet = await client.get("/s.js")
    response = await client.get("/p.js?sha256-x+y/z=", headers={"origin": "https://blog.example"})
    assert response.status_code == 200
    assert response.content == (STATIC / "p.js").read_bytes()
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["cross-origin-resource-policy"] == "cross-origin"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "public, max-age=300"
    digest = base64.b64encode(hashlib.sha256(response.content).digest()).decode()
    assert f'"sha256-{digest}"'.encode() in snippet.content
    assert b"IntersectionObserver" in response.content
    assert b"IntersectionObserver" not in snippet.content  # the publisher half is not in s.js

    etag = response.headers["etag"]
    assert etag != snippet.headers["etag"]
    not_modified = await client.get("/p.js", headers={"if-none-match": etag})
    assert not_modified.status_code == 304


async def test_every_snippet_answer_allows_cross_origin_loads(
    client: AsyncTestClient[Any],
) -> None:
    """s.js, its pinned copy and p.js: CORS for SRI, CORP for pages with COEP, as nginx.conf."""
    version = (await client.get("/s.js")).headers["etag"].strip('"')
    for path in ("/s.js", f"/s/{version}.js", "/p.js"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.headers["access-control-allow-origin"] == "*", path
        assert response.headers["cross-origin-resource-policy"] == "cross-origin", path
        # (Litestar adds the charset of a text type itself: once, not twice.)
        assert response.headers["content-type"] == "text/javascript; charset=utf-8", path
