"""The outbox's courier: a task of the worker process beside the stream consumer.

It sends what ``backend.domain.affiliate.delivery.deliver_due`` finds due, then waits a moment
when nothing was; it shares nothing with the event batches but the database, so a dead or slow
endpoint never holds ingestion or a batch. A failure of its own (the database away) is logged
and tried again after a pause, never the end of the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from backend.core.settings import IpNetwork
from backend.domain.affiliate.delivery import TIMEOUT_S, deliver_due
from backend.storage.db.engine import Database
from backend.worker.retry import jittered

POLL_S = 1.0
ERROR_PAUSE_S = 5.0
log = logging.getLogger(__name__)


class Courier:
    def __init__(
        self,
        database: Database,
        allowed: tuple[IpNetwork, ...] = (),
        *,
        poll_s: float = POLL_S,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.database = database
        self.allowed = allowed
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                sent = await deliver_due(self.database, self.allowed, timeout_s=self.timeout_s)
            except Exception:
                log.exception("outbox delivery failed; trying again")
                sent, pause = 0, jittered(ERROR_PAUSE_S)
            else:
                pause = self.poll_s
            if not sent:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), pause)
