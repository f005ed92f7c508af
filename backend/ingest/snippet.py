"""Serving the snippet: ``/s.js`` (short cache, ETag) and ``/s/<hash>.js`` (immutable).

nginx serves the same files from ``static/`` in production; this keeps a single-process
deployment and the tests complete. The versioned name is the one to pin with SRI.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from litestar import asgi
from litestar.types import Receive, Scope, Send

from backend.ingest.routes import respond


@dataclass(frozen=True, slots=True)
class Snippet:
    body: bytes
    version: str
    etag: bytes
    integrity: str

    @classmethod
    def load(cls, path: Path) -> Snippet:
        body = path.read_bytes() if path.exists() else b"/* snippet not built */"
        digest = hashlib.sha256(body).digest()
        version = digest.hex()[:12]
        return cls(
            body=body,
            version=version,
            etag=f'"{version}"'.encode(),
            integrity="sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode(),
        )

    @property
    def versioned_path(self) -> str:
        return f"/s/{self.version}.js"


async def _serve(scope: Scope, send: Send, cache: bytes) -> None:
    snippet: Snippet = scope["app"].state.snippet
    headers = [
        (b"content-type", b"text/javascript; charset=utf-8"),
        (b"cache-control", cache),
        (b"etag", snippet.etag),
        (b"access-control-allow-origin", b"*"),
        (b"x-content-type-options", b"nosniff"),
    ]
    if dict(scope["headers"]).get(b"if-none-match") == snippet.etag:
        await respond(send, 304, headers, b"")
        return
    length = (b"content-length", str(len(snippet.body)).encode())
    await respond(send, 200, [*headers, length], snippet.body)


@asgi("/s.js", include_in_schema=False, copy_scope=False)
async def serve_snippet(scope: Scope, receive: Receive, send: Send) -> None:
    await _serve(scope, send, b"public, max-age=300")


@asgi("/s", is_mount=True, include_in_schema=False, copy_scope=False)
async def serve_versioned_snippet(scope: Scope, receive: Receive, send: Send) -> None:
    """Only the current version answers: an old hash must not be served a different body."""
    snippet: Snippet = scope["app"].state.snippet
    if scope["path"].strip("/") != f"{snippet.version}.js":
        await respond(send, 404, [(b"content-type", b"text/plain")], b"not found")
        return
    await _serve(scope, send, b"public, max-age=31536000, immutable")
