"""Serving the snippet: ``/s.js`` (short cache, ETag), ``/s/<hash>.js`` (immutable) and
``/p.js``, the publisher half that ``s.js`` loads on publisher pages (short cache, ETag).

nginx serves the same files from ``static/`` in production; this keeps a single-process
deployment and the tests complete. The versioned name is the one to pin with SRI; ``s.js``
pins ``p.js`` itself (its hash is built in) and loads it in CORS mode, hence the
``Access-Control-Allow-Origin`` on every answer here.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath


@dataclass(frozen=True, slots=True)
class Snippet:
    body: bytes
    version: str
    etag: str
    integrity: str

    @classmethod
    def load(cls, path: Path) -> Snippet:
        body = path.read_bytes() if path.exists() else b"/* snippet not built */"
        digest = hashlib.sha256(body).digest()
        version = digest.hex()[:12]
        return cls(
            body=body,
            version=version,
            etag=f'"{version}"',
            integrity="sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode(),
        )

    @property
    def versioned_path(self) -> str:
        return f"/s/{self.version}.js"


def _snippet_response(
    request: Request[Any, Any, Any], snippet: Snippet, cache: str
) -> Response[bytes]:
    headers = {
        "cache-control": cache,
        "etag": snippet.etag,
        "access-control-allow-origin": "*",
        # as nginx.conf: merchant pages with Cross-Origin-Embedder-Policy may load it too
        "cross-origin-resource-policy": "cross-origin",
        "x-content-type-options": "nosniff",
    }
    if request.headers.get("if-none-match") == snippet.etag:
        return Response(b"", status_code=304, headers=headers)
    return Response(snippet.body, media_type="text/javascript", headers=headers)


@get("/s.js", include_in_schema=False)
async def serve_snippet(request: Request[Any, Any, Any]) -> Response[bytes]:
    return _snippet_response(request, request.app.state.snippet, "public, max-age=300")


@get("/p.js", include_in_schema=False)
async def serve_publisher_snippet(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The query (``s.js`` puts p.js's hash there, to miss an older cached copy) is ignored."""
    return _snippet_response(request, request.app.state.publisher_snippet, "public, max-age=300")


@get("/s/{file_name:str}", include_in_schema=False)
async def serve_versioned_snippet(
    request: Request[Any, Any, Any], file_name: FromPath[str]
) -> Response[bytes]:
    """Only the current version answers: an old hash must not be served a different body."""
    if file_name != f"{request.app.state.snippet.version}.js":
        raise NotFoundException("no snippet of this version")
    return _snippet_response(
        request, request.app.state.snippet, "public, max-age=31536000, immutable"
    )
