"""The memory soak: one web process under wrk for minutes, its resident memory sampled.

Every cache of the web process (addresses, countries, user agents, links, destination templates)
is bounded; this shows it. The load is made to fill them: each request comes from a random
address (an X-Forwarded-For, believed from the loopback proxy), one in five with a user agent
never seen before and one in five through a link code that does not exist (the largest caches,
32,768 agents' verdicts and 50,000 link codes, are full after about 250,000 requests), and
pixels and redirects alternate. The RSS is read from ``/proc`` every ``interval_s``; a process
whose memory is bounded rises while its caches fill and then stays flat.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from backend.storage.redis_server import EmbeddedRedis
from backend.tooling.bench.http_bench import WRK_REPORT, BenchError, WrkRun, cpu_pair
from backend.tooling.bench.processes import (
    TrackerProcess,
    free_port,
    on_cpu,
    run_settings,
    settings_env,
)
from backend.tooling.bench.programme import create_programme_database, sqlite_url
from backend.tooling.bench.traffic import BROWSERS, LANGUAGES

SOAK_SCRIPT = """
local paths = {"%(pixel)s", "%(click)s"}
local n = 0
request = function()
  n = n + 1
  local address = string.format("%%d.%%d.%%d.%%d", math.random(1, 223), math.random(0, 255),
    math.random(0, 255), math.random(1, 254))
  local agent = "%(agent)s"
  if math.random(5) == 1 then agent = agent .. " soak/" .. math.random(1, 1000000000) end
  local path = paths[n %% 2 + 1]
  if math.random(5) == 1 then path = "/c/nosuchcode" .. math.random(1, 1000000000) end
  return wrk.format("GET", path, {["X-Forwarded-For"] = address, ["User-Agent"] = agent,
    ["Accept-Language"] = "%(language)s"})
end
"""


@dataclass(frozen=True, slots=True)
class SoakReport:
    samples: tuple[tuple[float, int], ...]  # (seconds since the load began, RSS in bytes)
    run: WrkRun
    connections: int

    @property
    def start(self) -> int:
        return self.samples[0][1]

    @property
    def peak(self) -> int:
        return max(rss for _, rss in self.samples)

    @property
    def end(self) -> int:
        return self.samples[-1][1]

    @property
    def second_half(self) -> tuple[float, int]:
        """When the run's second half began and how much RSS grew over it: the caches fill in
        the first (at this mix, within a couple of minutes), so a bounded process is flat here."""
        middle = self.samples[-1][0] / 2
        at, rss = next((at, rss) for at, rss in self.samples if at >= middle)
        return at, self.end - rss


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for process {pid}")


def run_soak(
    workdir: Path, seconds: int, interval_s: float = 5.0, connections: int = 64
) -> SoakReport:
    """Load one ``clicktrail web`` for ``seconds`` with wrk, sampling its RSS meanwhile."""
    database = workdir / "clicktrail.db"
    link = asyncio.run(create_programme_database(database)).eur_link
    server_cpu, load_cpu = cpu_pair() or (None, None)
    script = workdir / "soak.lua"
    script.write_text(
        SOAK_SCRIPT
        % {
            "pixel": f"/p.gif?m={link.merchant_key}&oid=soak-order&amt=12.50&cur=EUR",
            "click": f"/c/{link.code}?sub1=sidebar&utm_source=soak",
            "agent": BROWSERS[0],
            "language": LANGUAGES[0],
        }
        + WRK_REPORT
    )
    port = free_port()
    redis_server = EmbeddedRedis(workdir / "redis").start()
    samples: list[tuple[float, int]] = []
    try:
        env = settings_env(run_settings(workdir, sqlite_url(database), redis_server.url))
        with TrackerProcess(port, env, workdir / "web.log", server_cpu) as web:
            command = [
                *on_cpu(load_cpu), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
                "--timeout", "5s", "-s", str(script), f"http://127.0.0.1:{port}",
            ]  # fmt: skip
            done = threading.Event()
            began = time.monotonic()

            def sample() -> None:
                while True:
                    samples.append((time.monotonic() - began, resident_bytes(web.pid)))
                    if done.wait(interval_s):
                        return

            sampler = threading.Thread(target=sample, name="rss-sampler")
            sampler.start()
            try:
                finished = subprocess.run(  # noqa: S603 - fixed arguments
                    command, capture_output=True, text=True, timeout=seconds + 60, check=False
                )
            finally:
                done.set()
                sampler.join()
            samples.append((time.monotonic() - began, resident_bytes(web.pid)))
    finally:
        redis_server.stop()
    lines = [line for line in finished.stdout.splitlines() if line.startswith("{")]
    if finished.returncode != 0 or not lines:
        raise BenchError(f"wrk failed ({finished.returncode}): {finished.stderr}")
    return SoakReport(tuple(samples), WrkRun.from_figures(json.loads(lines[-1])), connections)
