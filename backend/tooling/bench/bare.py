"""The HTTP baseline: a bare Litestar app whose one handler returns the pixel's GIF.

Served by uvicorn with the same settings as ``clicktrail web``, it shows what the framework and
the server cost before any tracking work, so the pixel and redirect figures read as ratios
(``uvicorn backend.tooling.bench.bare:app``).
"""

from __future__ import annotations

from litestar import Litestar, Response, get

from backend.web.ingest.routes import GIF


@get("/p.gif", include_in_schema=False)
async def pixel() -> Response[bytes]:
    return Response(GIF, media_type="image/gif", headers={"cache-control": "no-store, max-age=0"})


app = Litestar(route_handlers=[pixel], openapi_config=None)
