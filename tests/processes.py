"""Clicktrail's own processes as the tests run them: ``python -m backend.cli web|worker``.

A deployment runs these commands, configured only by the environment, so the browser, nginx
and fault tests start exactly them as child processes (never an in-process stand-in) and can
stop, kill and restart them like an operator or a crash would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import httpx

from backend.settings import Settings

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 20.0


def free_port() -> int:
    """A TCP port that nothing listens on at the moment of asking."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ClicktrailProcess:
    """One ``clicktrail`` command in a child process; ``ready`` says when it is serving."""

    def __init__(
        self,
        arguments: list[str],
        env: dict[str, str],
        log: Path,
        ready: Callable[[], bool],
        module: str = "backend.cli",
    ) -> None:
        self._module = module
        self._arguments = arguments
        self._env = env
        self._log = log
        self._ready = ready
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return " ".join([self._module, *self._arguments[:1]])

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> Self:
        # Only the variables given here: a developer's own CLICKTRAIL_* must not leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKTRAIL_")}
        env.update(self._env)
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", self._module, *self._arguments],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready in time:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish anything, as in a crash."""
        assert self._process is not None
        self._process.kill()
        self._process.wait(timeout=5)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, as a supervisor stops a process; return its exit code."""
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        return self._process.wait(timeout=timeout)

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)


class TrackerProcess(ClicktrailProcess):
    """``clicktrail web`` on a port of 127.0.0.1, ready once ``/healthz`` answers."""

    def __init__(self, port: int, env: dict[str, str], log: Path) -> None:
        self.origin = f"http://127.0.0.1:{port}"
        arguments = ["web", "--host", "127.0.0.1", "--port", str(port)]
        super().__init__(arguments, env, log, self._healthy)

    def _healthy(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.origin}/healthz", timeout=1.0).status_code == 200
        return False


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process load ``settings`` (those the tests vary)."""
    return {
        "CLICKTRAIL_VAR_DIR": str(settings.var_dir),
        "CLICKTRAIL_DATABASE_URL": settings.database_url,
        "CLICKTRAIL_REDIS_URL": settings.redis_url,
        "CLICKTRAIL_SECRET_KEY": settings.secret_key,
        "CLICKTRAIL_PUBLIC_URL": settings.public_url,
        "CLICKTRAIL_BATCH_SIZE": str(settings.batch_size),
        "CLICKTRAIL_BATCH_MAX_WAIT_MS": str(settings.batch_max_wait_ms),
        "CLICKTRAIL_CLAIM_IDLE_MS": str(settings.claim_idle_ms),
    }
