"""The API docs at ``/schema``: Swagger UI from Clicktrail's own files, under a CSP that allows
scripts, styles and requests from this origin only; the document as JSON and YAML."""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import AsyncTestClient


async def test_the_api_docs_load_only_clicktrails_own_files(client: AsyncTestClient[Any]) -> None:
    page = await client.get("/schema")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "connect-src 'self'" in csp
    assert "unsafe" not in csp
    assert "http" not in csp
    assert "<script>" not in page.text  # every script is a file
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets == [
        "data:,",
        "/static/vendor/swagger-ui/swagger-ui.css",
        "/static/vendor/swagger-ui/swagger-ui-bundle.js",
        "/static/api-docs.js",
    ]
    for asset in assets[1:]:
        served = await client.get(asset)
        assert served.status_code == 200, asset
        assert served.headers["content-type"].startswith(("text/css", "text/javascript")), asset
    assert 'data-schema="/schema/openapi.json"' in page.text
    assert (await client.get("/schema/openapi.yaml")).status_code == 200
    for dropped in ("/schema/redoc", "/schema/elements", "/schema/rapidoc"):
        assert (await client.get(dropped)).status_code == 404, dropped
