"""``clicktrail run``'s supervisor over real child processes: a dead child is started again with
a backoff that doubles up to its cap, a crash loop is said at error level, and stopping goes
in the reverse of the start order."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from backend.cli.supervisor import CRASH_LOOP_DEATHS, Child, Process, Supervisor


def command(*arguments: str) -> Callable[[], Process]:
    return lambda: subprocess.Popen([sys.executable, "-c", *arguments])


@contextmanager
def running(supervisor: Supervisor) -> Iterator[None]:
    """The supervisor started and watching in a thread until the block ends."""
    supervisor.start()
    watcher = threading.Thread(target=supervisor.run)
    watcher.start()
    try:
        yield
    finally:
        supervisor.stop()
        watcher.join(timeout=60)
    assert not watcher.is_alive()


def wait_for(condition: Callable[[], bool], within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_a_child_that_keeps_dying_is_started_again_with_capped_backoff_said_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="backend.cli.supervisor")
    child = Child("flaky", command("raise SystemExit(3)"), stop_timeout_s=5)
    supervisor = Supervisor([child], backoff_start_s=0.1, backoff_max_s=0.4)

    def deaths() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "exited with code 3" in r.getMessage()]

    with running(supervisor):
        wait_for(lambda: len(deaths()) >= CRASH_LOOP_DEATHS + 2)

    delays = [float(re.findall(r"again in ([\d.]+)s", r.getMessage())[0]) for r in deaths()]
    assert delays[:7] == [0.1, 0.2, 0.4, 0.4, 0.4, 0.4, 0.4]
    levels = [record.levelname for record in deaths()][: CRASH_LOOP_DEATHS + 2]
    assert levels == ["WARNING"] * (CRASH_LOOP_DEATHS - 1) + ["ERROR"] * 3
    assert "it keeps dying" in deaths()[CRASH_LOOP_DEATHS - 1].getMessage()


def test_a_killed_child_is_started_again_and_all_stop_in_reverse_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="backend.cli.supervisor")
    forever = "import time; time.sleep(600)"
    first, second = (Child(name, command(forever), stop_timeout_s=5) for name in ("1st", "2nd"))
    supervisor = Supervisor([first, second], backoff_start_s=0.1)
    with running(supervisor):
        assert first.process is not None
        killed = first.process.pid
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: first.process is not None and first.process.pid != killed)
        restarted, other = first.process.pid, second.process
    assert other is not None
    log = caplog.text
    assert f"1st (pid {killed}) was killed by SIGKILL" in log
    assert f"1st started (pid {restarted})" in log
    assert log.index(f"2nd (pid {other.pid}) stopped") < log.index(f"1st (pid {restarted}) stopped")
    assert first.process is not None
    assert first.process.poll() is not None
    assert other.poll() is not None
