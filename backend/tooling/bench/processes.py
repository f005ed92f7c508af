"""Child processes as an operator or a crash treats them: started, awaited, stopped, killed.

The benchmarks and the tests run Clicktrail's own commands (``python -m backend.cli web`` and
``worker``, configured only by the environment, as a deployment runs them) and the servers
around them (nginx, the bare baseline) as real child processes, never in-process stand-ins,
all through this one runner: each is ready when its own check says so, and stops with SIGTERM
(a supervisor's stop), or SIGKILL when that does not end it in time or a crash is the point.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from backend.core.settings import Settings

REPO = Path(__file__).resolve().parents[3]
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


class StartError(RuntimeError):
    """A child process exited at start or was not ready in time."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that nothing listens on at the moment of asking."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def free_port() -> int:
    (port,) = free_ports(1)
    return port


def on_cpu(cpu: int | None) -> list[str]:
    """The command prefix that pins a process to ``cpu`` (none when ``cpu`` is None)."""
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def accepting(port: int) -> Callable[[], bool]:
    """Readiness: ``port`` of 127.0.0.1 accepts connections (uvicorn binds after startup)."""

    def check() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return False
        return True

    return check


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process load ``settings`` (those the runs vary)."""
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


def run_settings(workdir: Path, database_url: str, redis_url: str) -> Settings:
    """Settings for one benchmark run in ``workdir``: its own files and a new secret key."""
    return Settings(
        var_dir=workdir / "var",
        database_url=database_url,
        redis_url=redis_url,
        secret_key=os.urandom(32).hex(),
    )


class ChildProcess:
    """One command in a child process, its output appended to ``log``; ``ready`` says when it
    serves. A context manager: started on entry, stopped on exit."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log: Path,
        ready: Callable[[], bool],
        env: dict[str, str] | None = None,
        cpu: int | None = None,
    ) -> None:
        self.name = name
        self._command = [*on_cpu(cpu), *command]
        self._env = env
        self._log = log
        self._ready = ready
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> Self:
        env = None
        if self._env is not None:
            # Only the variables given: a developer's own CLICKTRAIL_* must not leak in.
            env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKTRAIL_")}
            env.update(self._env)
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own commands
                self._command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise StartError(f"{self.name} exited at start:\n{self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.05)
        self.stop()
        raise StartError(f"{self.name} was not ready in time:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish anything, as in a crash."""
        assert self._process is not None
        self._process.kill()
        self._process.wait(timeout=5)

    def terminate(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, as a supervisor stops a process; return its exit code."""
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        return self._process.wait(timeout=timeout)

    def interrupt(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGINT, as Ctrl-C stops a process in a terminal; return its exit code."""
        assert self._process is not None
        self._process.send_signal(signal.SIGINT)
        return self._process.wait(timeout=timeout)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, then SIGKILL if the process has not ended within ``timeout``."""
        if self._process is None or self._process.poll() is not None:
            return
        try:
            self.terminate(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class ClicktrailProcess(ChildProcess):
    """``python -m <module> <arguments>`` with this interpreter (``clicktrail`` by default)."""

    def __init__(
        self,
        arguments: Sequence[str],
        env: dict[str, str],
        log: Path,
        ready: Callable[[], bool],
        module: str = "backend.cli",
        cpu: int | None = None,
    ) -> None:
        name = " ".join([module, *arguments[:1]])
        command = [sys.executable, "-m", module, *arguments]
        super().__init__(name, command, log, ready, env, cpu)


class TrackerProcess(ClicktrailProcess):
    """``clicktrail web`` on a port of 127.0.0.1, ready once ``/healthz`` answers."""

    def __init__(self, port: int, env: dict[str, str], log: Path, cpu: int | None = None) -> None:
        self.origin = f"http://127.0.0.1:{port}"
        arguments = ["web", "--host", "127.0.0.1", "--port", str(port)]
        super().__init__(arguments, env, log, self._healthy, cpu=cpu)

    def _healthy(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.origin}/healthz", timeout=1.0).status_code == 200
        return False


class WorkerProcess(ClicktrailProcess):
    """``clicktrail worker`` (or another module's), ready once its consumer reads the stream.

    Readiness is the worker's own log line: a consumer is listed in the group only once its
    first heartbeat has run, and a group made by an earlier worker says nothing of this one.
    """

    def __init__(self, env: dict[str, str], log: Path, module: str = "backend.cli") -> None:
        super().__init__(["worker"], env, log, self._consuming, module)

    @property
    def consumer_name(self) -> str:
        """Its name in the consumer group (``StreamConsumer``'s default)."""
        return f"{socket.gethostname()}-{self.pid}"

    def _consuming(self) -> bool:
        return f"consumer {self.consumer_name} reading" in self.log_tail(lines=200)
