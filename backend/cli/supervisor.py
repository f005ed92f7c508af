"""``clicktrail run``'s supervisor: the embedded Redis, the worker and the web process as child
processes, each started again when it dies, until SIGINT or SIGTERM stops them all.

On one machine ``run`` is what systemd is to a deployment. A child that dies is logged with
how (its exit code or signal) and started again after a backoff that doubles from
``BACKOFF_START_S`` up to ``BACKOFF_MAX_S``, and starts over once the child has run for
``STEADY_S``; a child that keeps dying is still started again, and said so at error level. The
other children go on meanwhile: the web answers from its spool while Redis is down, and the
worker waits for Redis. Children run in process groups of their own, so a Ctrl-C in the
terminal reaches the supervisor alone, which stops them in the reverse of their start order.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
STEADY_S = 60.0  # a child that ran this long before dying is no crash loop
CRASH_LOOP_DEATHS = 5  # deaths in a row, each before STEADY_S, that make a crash loop
WATCH_EVERY_S = 0.2

Process = subprocess.Popen[bytes]


def how_it_ended(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


@dataclass
class Child:
    """One supervised process: ``start`` makes a new one; ``stop_timeout_s`` is how long it
    may take to finish its work after SIGTERM before it is killed."""

    name: str
    start: Callable[[], Process]
    stop_timeout_s: float
    process: Process | None = None  # None while it waits to be started again
    started_at: float = 0.0
    deaths: int = 0  # in a row, each before STEADY_S
    restart_at: float = 0.0


class Supervisor:
    """Starts ``children`` in order, keeps them running, stops them in reverse order."""

    def __init__(
        self,
        children: Sequence[Child],
        backoff_start_s: float = BACKOFF_START_S,
        backoff_max_s: float = BACKOFF_MAX_S,
    ) -> None:
        self.children = list(children)
        self._backoff_start_s = backoff_start_s
        self._backoff_max_s = backoff_max_s
        self._stopping = False

    def start(self) -> None:
        """Start the children that are not running yet (one may have been started already)."""
        for child in self.children:
            if child.process is None:
                self._launch(child)
            else:
                child.started_at = time.monotonic()

    def stop(self, *_: object) -> None:
        """Make ``run`` stop everything and return (a signal handler)."""
        self._stopping = True

    def run(self) -> None:
        """Watch the children until ``stop``, then stop them, the last started first."""
        while not self._stopping:
            time.sleep(WATCH_EVERY_S)
            for child in self.children:
                if not self._stopping:
                    self._watch(child)
        for child in reversed(self.children):
            self._stop(child)

    def _watch(self, child: Child) -> None:
        now = time.monotonic()
        if child.process is None:
            if now >= child.restart_at:
                self._launch(child)
            return
        returncode = child.process.poll()
        if returncode is not None:
            self._died(child, f"(pid {child.process.pid}) {how_it_ended(returncode)}", now)

    def _died(self, child: Child, how: str, now: float) -> None:
        """Log the death (``how`` it ended) and when the child starts again."""
        ran_s = now - child.started_at
        child.deaths = 1 if ran_s >= STEADY_S else child.deaths + 1
        delay = min(self._backoff_start_s * 2 ** (child.deaths - 1), self._backoff_max_s)
        child.restart_at = now + delay
        child.process = None
        if child.deaths >= CRASH_LOOP_DEATHS:
            log.error(
                "%s %s after %.1fs: %d deaths in a row, it keeps dying; starting it again in %.1fs",
                child.name, how, ran_s, child.deaths, delay,
            )  # fmt: skip
        else:
            log.warning(
                "%s %s after %.1fs; starting it again in %.1fs", child.name, how, ran_s, delay
            )

    def _launch(self, child: Child) -> None:
        now = time.monotonic()
        child.started_at = now
        try:
            child.process = child.start()
        except OSError as error:  # the command itself cannot run: counted as a death
            self._died(child, f"could not start ({error})", now)
            return
        log.info("%s started (pid %d)", child.name, child.process.pid)

    def _stop(self, child: Child) -> None:
        """SIGTERM, then SIGKILL if the child has not finished within its stop timeout."""
        process = child.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=child.stop_timeout_s)
        except subprocess.TimeoutExpired:
            log.error(
                "%s (pid %d) did not stop in %.0fs", child.name, process.pid, child.stop_timeout_s
            )
            process.kill()
            process.wait()
        if process.returncode in (0, -signal.SIGTERM):
            log.info("%s (pid %d) stopped", child.name, process.pid)
        else:
            ended = how_it_ended(process.returncode)
            log.warning("%s (pid %d) stopped but %s", child.name, process.pid, ended)
