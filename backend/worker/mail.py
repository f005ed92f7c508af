"""The mail courier: a task of the worker process beside the stream consumer and the outbox's
courier. It sends what ``backend.domain.mail.delivery.deliver_due`` finds due, then waits a
moment when nothing was; a failure of its own (the database away) is logged and tried again
after a pause, never the end of the worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from backend.core.settings import Settings
from backend.domain.mail.delivery import deliver_due
from backend.storage.db.engine import Database
from backend.worker.retry import jittered

POLL_S = 1.0
ERROR_PAUSE_S = 5.0
log = logging.getLogger(__name__)


class MailCourier:
    def __init__(self, database: Database, settings: Settings, *, poll_s: float = POLL_S) -> None:
        self.database = database
        self.settings = settings
        self.poll_s = poll_s
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                sent = await deliver_due(self.database, self.settings)
            except Exception:
                log.exception("mail delivery failed; trying again")
                sent, pause = 0, jittered(ERROR_PAUSE_S)
            else:
                pause = self.poll_s
            if not sent:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), pause)
