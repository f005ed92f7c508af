"""The three origins of the browser tests, as real servers.

A snippet can only be proven across sites when the sites are really different origins: the
publisher's page, the merchant's pages and the tracker must not share a host and port, or
cookies, localStorage, referrers and CORS would all behave unlike production. So the publisher
and the merchant each get a small threaded HTTP server, and the tracker is the real Clicktrail
web process (uvicorn, the same command a deployment runs), not an in-process test client.
"""

from __future__ import annotations

import contextlib
import html
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template
from typing import cast

PAGES = Path(__file__).resolve().parent / "pages"


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port that refuses connections for as long as the block runs.

    The socket is bound but never listens: every connection is refused, and no other process
    can take the port in the meantime (a port merely found free could be reused at once).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port: int = holder.getsockname()[1]
        yield port


def snippet_tag(src: str, **data: str) -> str:
    """The embed tag of the snippet as the README gives it: ``async``, ``data-`` options."""
    attributes = "".join(
        f' data-{name.replace("_", "-")}="{html.escape(value)}"' for name, value in data.items()
    )
    return f'<script async src="{html.escape(src)}"{attributes}></script>'


class StaticSite(ThreadingHTTPServer):
    """One website: the ``*.html`` templates of one folder under ``pages/``.

    Pages are ``string.Template`` files; ``values`` fills them in (the snippet tag, the tracking
    link, the order id) so that each test can set its own keys without writing files. A value
    missing from ``values`` answers 500, which a test notices at once.
    """

    daemon_threads = True

    def __init__(self, folder: str, host: str) -> None:
        super().__init__(("127.0.0.1", 0), _PageHandler)
        self.root = PAGES / folder
        self.host = host
        self.values: dict[str, str] = {}
        self._thread = threading.Thread(target=self.serve_forever, name=folder, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.server_address[1]}"

    def url(self, path: str) -> str:
        return f"{self.origin}/{path.lstrip('/')}"

    def start(self) -> StaticSite:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


class _PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        site = cast(StaticSite, self.server)
        name = self.path.split("?", 1)[0].split("#", 1)[0].lstrip("/")
        page = site.root / name
        if "/" in name or not name.endswith(".html") or not page.is_file():
            self._answer(404, b"not found", "text/plain")
            return
        try:
            body = Template(page.read_text()).substitute(site.values).encode()
        except KeyError as missing:
            self._answer(500, f"no value for {missing}".encode(), "text/plain")
            return
        self._answer(200, body, "text/html; charset=utf-8")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: pytest shows the tests' own output, not an access log."""
