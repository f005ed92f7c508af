"""What the browser tests share besides fixtures: the programme under test, the store the
worker writes, the record of what the browser sent, and the beacon helpers.

(Kept out of ``conftest.py`` so that test modules import plain names from a plain module.)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from playwright.async_api import Request
from redis.asyncio import Redis
from sqlalchemy import ColumnElement, select

from backend.storage.db.engine import Database
from backend.storage.db.models import Base
from backend.worker.consumer import StreamConsumer
from tests import support
from tests.browser.servers import StaticSite

WAIT_S = 10.0

M = TypeVar("M", bound=Base)


@dataclass
class Sites:
    """The publisher's blog on ``127.0.0.1`` and the merchant's shop on ``localhost``."""

    publisher: StaticSite
    merchant: StaticSite


@dataclass(frozen=True)
class Programme:
    """One merchant (domain ``localhost``), partner, campaign and link, made over HTTP."""

    merchant_id: int
    merchant_key: str
    partner_id: int
    partner_key: str
    campaign_id: int
    link_id: int
    link_code: str
    link_url: str
    destination: str


ProgrammeFactory = Callable[[str], Awaitable[Programme]]


async def create_programme(
    client: httpx.AsyncClient, headers: dict[str, str], destination: str
) -> Programme:
    """A programme on the merchant domain ``localhost`` whose campaign lands on ``destination``."""
    made = await support.create_programme(
        client, headers, domains=["localhost"], destination_url=destination
    )
    return Programme(
        merchant_id=made.merchant["id"],
        merchant_key=made.merchant["key"],
        partner_id=made.partner["id"],
        partner_key=made.partner["key"],
        campaign_id=made.campaign["id"],
        link_id=made.link["id"],
        link_code=made.link["code"],
        link_url=made.link["url"],
        destination=destination,
    )


@dataclass
class Store:
    """The database as the worker leaves it, and the stream the tracker writes to."""

    database: Database
    consumer: StreamConsumer
    redis: Redis
    stream: str

    async def wait_for(
        self, model: type[M], *criteria: ColumnElement[bool], count: int = 1
    ) -> list[M]:
        """Rows of ``model`` matching ``criteria`` once there are ``count`` (or the time is up).

        The browser may report a beacon before the tracker has answered it (and so before its
        event is in Redis); so drain and look again until the rows are there.
        """
        deadline = time.monotonic() + WAIT_S
        while True:
            await self.consumer.ensure_group()  # the group goes with each test's flush
            await self.consumer.drain()
            async with self.database.session() as session:
                rows = list(await session.scalars(select(model).where(*criteria)))
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.05)

    async def queued(self) -> int:
        """Entries in the event stream since the test began."""
        length: int = await self.redis.xlen(self.stream)
        return length


@dataclass
class Wire:
    """What the browser did, as seen from outside the page: requests, console and errors."""

    requests: list[Request] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def to(self, origin: str) -> list[Request]:
        return [r for r in self.requests if r.url.startswith(origin + "/")]


def beacon_to(origin: str) -> Callable[[Request], bool]:
    """Matches the snippet's ``POST /e`` to the tracker."""
    return lambda request: request.method == "POST" and request.url == origin + "/e"


async def accepted(request: Request) -> dict[str, Any]:
    """The JSON body of a beacon the tracker accepted with 202.

    (Chromium keeps no response body for a beacon, so the answer's own count cannot be read
    here; the rows in the database are the proof that each event was accepted.)
    """
    response = await request.response()
    assert response is not None, request.failure
    assert response.status == 202
    body: dict[str, Any] = json.loads(request.post_data or "null")
    return body
