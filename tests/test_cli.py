"""The README's first command, for real: ``clicktrail run`` starts embedded Redis, migrates,
runs web and worker as processes; a click and a conversion sent over HTTP reach the stats, and
what it keeps under var/ is the owner's only."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from backend.tooling.bench.processes import free_port
from tests.support import BROWSER_HEADERS, click_id_in

ROOT = Path(__file__).resolve().parent.parent


def clicktrail(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip


def clean_env() -> dict[str, str]:
    """This environment without any Clicktrail setting, so the embedded defaults apply."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLICKTRAIL_")}
    return env | {"PYTHONPATH": str(ROOT)}


def wait_ready(base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "web server did not become ready"
        time.sleep(0.2)


def worker_threads_cpus(run_pid: int) -> set[frozenset[int]]:
    """The CPUs each thread of ``clicktrail run``'s worker process may run on."""
    children = Path(f"/proc/{run_pid}/task/{run_pid}/children").read_text().split()
    (worker,) = [  # the child started as ``... clicktrail worker`` (an argument of its own)
        pid
        for pid in children
        if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    ]
    threads = [int(tid) for tid in os.listdir(f"/proc/{worker}/task")]
    assert len(threads) > 1  # the event loop and at least the database threads
    return {frozenset(os.sched_getaffinity(tid)) for tid in threads}


def expected_worker_cpus() -> set[frozenset[int]]:
    """All on the last CPU where there are two or more, so the web and Redis have the rest."""
    cpus = sorted(os.sched_getaffinity(0))
    return {frozenset(cpus[-1:] if len(cpus) > 1 else cpus)}


def test_clicktrail_run_end_to_end(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env()
    process = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "run", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        assert process.stdout is not None
        banner: list[str] = []
        for line in process.stdout:
            banner.append(line)
            if line.startswith("First admin:"):
                break
        assert f"Clicktrail is running at {base}" in "".join(banner)
        assert "password: " in banner[-1]
        wait_ready(base)
        assert (tmp_path / "var" / "redis.sock").exists()
        assert (tmp_path / "var" / "appendonlydir").exists() or list(
            (tmp_path / "var").glob("*.aof")
        )

        key = clicktrail("apikey", "create", "--name", "e2e", cwd=tmp_path, env=env).stdout
        headers = {"Authorization": f"Bearer {key.strip().splitlines()[-1]}"}
        with httpx.Client(base_url=base, headers=headers, follow_redirects=False) as api:
            merchant = api.post(
                "/api/v1/merchants",
                json={"name": "Shop", "currency": "EUR", "domains": ["shop.example"]},
            ).json()
            partner = api.post("/api/v1/partners", json={"name": "Blog"}).json()
            campaign = api.post(
                "/api/v1/campaigns",
                json={
                    "merchant_id": merchant["id"],
                    "name": "C",
                    "destination_url": "https://shop.example/",
                    "commission_percent": "12.5",
                },
            ).json()
            link = api.post(
                "/api/v1/links", json={"partner_id": partner["id"], "campaign_id": campaign["id"]}
            ).json()
            redirect = api.get(f"/c/{link['code']}", headers=BROWSER_HEADERS)
            assert redirect.status_code == 302
            click_id = click_id_in(redirect.headers["location"])
            pixel = api.get(
                "/p.gif",
                params={
                    "m": merchant["key"],
                    "oid": "E2E-1",
                    "amt": "80.00",
                    "cur": "EUR",
                    "clk": click_id,
                },
            )
            assert pixel.status_code == 200
            assert len(pixel.content) == 43

            deadline = time.monotonic() + 10
            while True:
                totals = api.get("/api/v1/stats").json()["totals"]
                if totals["conversions"] == 1:
                    break
                assert time.monotonic() < deadline, f"conversion never reached the stats: {totals}"
                time.sleep(0.2)
        assert (totals["clicks"], totals["revenue_minor"], totals["commission_minor"]) == (
            1,
            8000,
            1000,
        )
        assert worker_threads_cpus(process.pid) == expected_worker_cpus()

        # The commands beside it find it (var/instance.json) and read what it wrote.
        status = clicktrail("status", cwd=tmp_path, env=env).stdout
        assert f"Clicktrail at {base}: ready" in status
        assert "workers: 1 alive" in status
        assert "last event queued: never" not in status
        conversions = clicktrail("export", "conversions", cwd=tmp_path, env=env).stdout
        header, row = conversions.splitlines()
        assert header.startswith("id,time_utc,order_id,status")
        assert ",E2E-1," in row
        assert ",8000,1000,EUR," in row
        by_partner = clicktrail("export", "stats", "--by", "partner", cwd=tmp_path, env=env)
        assert by_partner.stdout.splitlines()[1].startswith("Blog,1,")
        busy = subprocess.run(
            [sys.executable, "-m", "backend.cli", "run", "--port", str(port)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert busy.returncode == 1
        assert busy.stderr.startswith(f"cannot listen on 127.0.0.1:{port}: ")
        assert "Traceback" not in busy.stderr
        # The database, its log, Redis's files, the secret: nobody else's to read.
        var = tmp_path / "var"
        assert stat.S_IMODE(var.stat().st_mode) == 0o700
        readable = [str(path) for path in var.rglob("*") if path.stat().st_mode & 0o077]
        assert readable == []
        assert {"clicktrail.db", "secret_key", "redis.log"} <= {p.name for p in var.iterdir()}
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0
    assert not (tmp_path / "var" / "redis.sock").exists()
    assert not (tmp_path / "var" / "instance.json").exists()
    stopped = subprocess.run(
        [sys.executable, "-m", "backend.cli", "status", "--url", base],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert stopped.returncode == 3
    assert stopped.stdout.startswith(f"Clicktrail is not running at {base} (")


def test_web_stops_its_embedded_redis_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    clicktrail("db", "upgrade", cwd=tmp_path, env=clean_env())
    process = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "web", "--port", str(port)],
        cwd=tmp_path, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}")
        assert (tmp_path / "var" / "redis.sock").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0
    assert not (tmp_path / "var" / "redis.sock").exists()
