"""The OpenAPI document of the management API and its pages under ``/schema``.

``/schema`` (and ``/schema/swagger``) is Swagger UI, run from Clicktrail's own static files (no
CDN, no inline script: the page's CSP allows scripts, styles and requests from this origin only);
``/schema/openapi.json`` and ``/schema/openapi.yaml`` are the document itself. One UI is enough:
Swagger UI reads OpenAPI 3.1, tries requests with an API key and needs no inline style, which
ReDoc, Stoplight Elements and RapiDoc would (Litestar loads all of them from CDNs by default).
"""

from __future__ import annotations

from html import escape
from typing import Any

from litestar import Request, Router
from litestar.datastructures import ResponseHeader
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import OpenAPIRenderPlugin, YamlRenderPlugin

from backend.security_headers import CSP

DOCS_CSP = CSP.replace(
    "default-src 'none';", "default-src 'none'; script-src 'self'; connect-src 'self';"
)


class SwaggerPage(OpenAPIRenderPlugin):
    """Swagger UI from ``static/vendor/swagger-ui``, started by ``static/api-docs.js``."""

    def __init__(self) -> None:
        super().__init__(path=["/", "/swagger"])

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = escape(str(openapi_schema["info"]["title"]))
        schema_url = escape(self.get_openapi_json_route(request))
        return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} API</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/vendor/swagger-ui/swagger-ui.css"></head>
<body><div id="swagger-ui" data-schema="{schema_url}"></div>
<script src="/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/static/api-docs.js"></script>
</body>
</html>
""".encode()


def openapi_config() -> OpenAPIConfig:
    docs = Router(
        "/schema",
        route_handlers=[],
        include_in_schema=False,
        response_headers=[ResponseHeader(name="Content-Security-Policy", value=DOCS_CSP)],
    )
    return OpenAPIConfig(
        title="Clicktrail",
        version="1",
        openapi_router=docs,
        render_plugins=[SwaggerPage(), YamlRenderPlugin()],
    )
