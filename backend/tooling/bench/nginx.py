"""The repository's ``nginx.conf``, run for real by the nginx tests and the load benchmark.

A configuration that is only a sample rots unnoticed, so the file is run as shipped, with
substitutions forced by a test machine only: the ``listen`` port (80 needs root and may be
taken) and the upstream ``server`` line (the app listens on free ports; the load benchmark
runs two). Everything else, including relative paths resolved against ``-p``, is the file a
deployment runs. For the load benchmark the ``limit_req`` lines go too (``rate_limits=False``):
every request comes from one loopback address, which the per-address limits exist to stop.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from backend.tooling.bench.processes import ChildProcess, StartError

NGINX = Path("/usr/sbin/nginx")
REPO = Path(__file__).resolve().parents[3]
CONF = REPO / "nginx.conf"
# The lines of nginx.conf that are replaced (see the module docstring).
SHIPPED_LISTEN = "listen 80 default_server;"
SHIPPED_UPSTREAM = "server 127.0.0.1:8000;"
RATE_LIMIT = re.compile(r"^\s*limit_req zone=\w+ burst=\d+ nodelay;\n", re.M)
RATE_LIMITED_LOCATIONS = 3  # /c/, /p.gif and /e
LOG_WAIT_S = 5.0


class NginxError(RuntimeError):
    """nginx refused the configuration or did not start."""


def nginx_globals() -> str:
    """``-g`` directives: in the foreground, so the caller owns the process.

    As root, also ``user root``: by default nginx would run its workers as ``nobody``, who
    cannot enter private (0700) temporary directories. The shipped file has no ``user`` line,
    so this adds rather than overrides.
    """
    return "daemon off;" + (" user root;" if os.geteuid() == 0 else "")


def nginx_command(prefix: Path, conf: Path, *extra: str) -> list[str]:
    return [str(NGINX), "-p", str(prefix), "-c", str(conf), "-g", nginx_globals(), *extra]


def make_prefix(directory: Path) -> Path:
    """A deployment directory as nginx.conf expects it: ``static/`` and an existing ``var/``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "var").mkdir(exist_ok=True)
    (directory / "static").symlink_to(REPO / "static", target_is_directory=True)
    return directory


def check_config(prefix: Path, conf: Path) -> None:
    """``nginx -t``: the file parses, every path resolves and every module is there."""
    result = subprocess.run(  # noqa: S603 - fixed binary and arguments
        nginx_command(prefix, conf, "-t"), capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0 or "test is successful" not in result.stderr:
        raise NginxError(result.stderr)


def adapted_config(port: int, upstream_ports: Sequence[int], *, rate_limits: bool = True) -> str:
    """nginx.conf listening on ``port`` in front of the app on ``upstream_ports``."""
    shipped = CONF.read_text()
    # Each anchor exactly once, or the substitution would silently run another file.
    for anchor in (SHIPPED_LISTEN, SHIPPED_UPSTREAM):
        if shipped.count(anchor) != 1:
            raise NginxError(f"nginx.conf should have {anchor!r} once")
    servers = "\n        ".join(f"server 127.0.0.1:{upstream};" for upstream in upstream_ports)
    conf = shipped.replace(SHIPPED_LISTEN, f"listen 127.0.0.1:{port} default_server;")
    conf = conf.replace(SHIPPED_UPSTREAM, servers)
    if not rate_limits:
        conf, removed = RATE_LIMIT.subn("", conf)
        if removed != RATE_LIMITED_LOCATIONS:
            raise NginxError(f"expected {RATE_LIMITED_LOCATIONS} limit_req lines, found {removed}")
    return conf


class NginxProcess:
    """nginx with the repository's configuration in its own prefix directory."""

    def __init__(
        self, prefix: Path, port: int, upstream_ports: Sequence[int], *, rate_limits: bool = True
    ) -> None:
        self.prefix = prefix
        self.origin = f"http://127.0.0.1:{port}"
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(adapted_config(port, upstream_ports, rate_limits=rate_limits))
        stderr = prefix / "nginx.stderr"
        self._process = ChildProcess("nginx", nginx_command(prefix, self.conf), stderr, self._up)

    def start(self) -> NginxProcess:
        check_config(self.prefix, self.conf)
        try:
            self._process.start()
        except StartError as error:
            raise NginxError(str(error)) from None
        return self

    def _up(self) -> bool:
        # A file nginx serves itself: up even when the upstream is not (the app's own start
        # waits for its health check).
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.origin}/s.js", timeout=1.0).status_code == 200
        return False

    def stop(self) -> None:
        self._process.stop()  # SIGTERM: fast shutdown; the workers go with it

    def logs(self) -> str:
        """Everything nginx wrote to its log files (access and error log)."""
        return "\n".join(path.read_text() for path in sorted((self.prefix / "var").glob("*.log")))

    def error_log(self) -> str:
        return (self.prefix / "var" / "error.log").read_text()

    def access_lines(self, prefix: str) -> list[str]:
        """The access log's lines of one client network (its anonymised prefix)."""
        log = (self.prefix / "var" / "access.log").read_text()
        return [line for line in log.splitlines() if line.startswith(f"{prefix} ")]

    def wait_for_access_lines(
        self, prefix: str, predicate: Callable[[list[str]], bool]
    ) -> list[str]:
        """Poll: nginx writes a line once the response is sent, so maybe after the client read
        it."""
        deadline = time.monotonic() + LOG_WAIT_S
        while not predicate(lines := self.access_lines(prefix)):
            if time.monotonic() > deadline:
                raise AssertionError(f"access log for {prefix}:\n" + "\n".join(lines))
            time.sleep(0.02)
        return lines
