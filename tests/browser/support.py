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

from backend.db.engine import Database
from backend.db.models import Base
from backend.worker.consumer import StreamConsumer
from tests.browser.servers import StaticSite
from tests.support import post_json

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
    """A programme whose campaign lands on ``destination``, through the management API."""
    merchant = await post_json(
        client,
        "/api/v1/merchants",
        {"name": "Scarf shop", "currency": "EUR", "domains": ["localhost"]},
        headers,
    )
    partner = await post_json(client, "/api/v1/partners", {"name": "Gift blog"}, headers)
    campaign = await post_json(
        client,
        "/api/v1/campaigns",
        {
            "merchant_id": merchant["id"],
            "name": "Winter sale",
            "destination_url": destination,
            "commission_percent": "10",
            "commission_flat_minor": 50,
        },
        headers,
    )
    link = await post_json(
        client,
        "/api/v1/links",
        {"partner_id": partner["id"], "campaign_id": campaign["id"]},
        headers,
    )
    return Programme(
        merchant_id=merchant["id"],
        merchant_key=merchant["key"],
        partner_id=partner["id"],
        partner_key=partner["key"],
        campaign_id=campaign["id"],
        link_id=link["id"],
        link_code=link["code"],
        link_url=link["url"],
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
