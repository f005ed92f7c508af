"""``clicktrail run`` as a deployment under fault: its supervisor, and the embedded Redis, web
and worker it starts, found through /proc so that a test can kill one as a crash would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import httpx

from backend.storage.redis_server import EmbeddedRedis
from backend.tooling.bench.processes import ClicktrailProcess
from tests.faults.harness import Stack
from tests.support import Programme

CHILDREN = ("redis", "worker", "web")


def _kind(pid: str) -> str | None:
    """Which child ``pid`` is ("redis", "worker" or "web"), None once it has exited."""
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return None  # dead, not reaped yet
        if Path(f"/proc/{pid}/comm").read_text().strip() == "redis-server":
            return "redis"  # which rewrites its command line
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return None
    return next((kind for kind in CHILDREN if kind.encode() in arguments[1:]), None)


def running(pid: int) -> bool:
    return _kind(str(pid)) is not None


class RunStack(Stack):
    """The deployment ``clicktrail run`` makes in ``root``: its embedded Redis in ``var/``."""

    def __init__(self, root: Path, database_url: str, secret_key: str) -> None:
        super().__init__(root, database_url, secret_key, EmbeddedRedis(root / "var"))
        del self.env["CLICKTRAIL_REDIS_URL"]  # run starts its own
        self.log = root / "run.log"
        self.run: ClicktrailProcess | None = None

    async def start_run(self) -> Programme:
        """``clicktrail run``, ready once its web answers; then a programme through it."""
        arguments = ["run", "--host", "127.0.0.1", "--port", str(self.port)]
        self.run = ClicktrailProcess(arguments, self.env, self.log, self._web_answers)
        await asyncio.to_thread(self.run.start)
        return await self.make_programme()

    def _web_answers(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.origin}/healthz", timeout=1.0).status_code == 200
        return False

    def children(self) -> dict[str, int]:
        """The live children of the supervisor by kind."""
        assert self.run is not None
        listed = Path(f"/proc/{self.run.pid}/task/{self.run.pid}/children").read_text().split()
        return {kind: int(pid) for pid in listed if (kind := _kind(pid)) is not None}

    def kill_child(self, kind: str) -> int:
        """SIGKILL the ``kind`` child; return its pid."""
        pid = self.children()[kind]
        os.kill(pid, signal.SIGKILL)
        return pid

    def run_log(self) -> str:
        return self.log.read_text(errors="replace")

    def worker_logs(self, lines: int = 15) -> str:
        return "\n".join(self.run_log().splitlines()[-lines:])

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the supervisor; return its exit code."""
        assert self.run is not None
        return self.run.interrupt(timeout=120)

    async def close(self) -> None:
        if self.run is not None:
            await asyncio.to_thread(self.run.stop, 120)
        await super().close()
