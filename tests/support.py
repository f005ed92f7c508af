"""Helpers shared by the tests: API keys, a ready-made affiliate programme, browser headers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from litestar.testing import AsyncTestClient

from backend.core.ids import ClickIdSigner, new_event_id
from backend.domain.auth import generate_api_key, hash_api_key, hash_password
from backend.domain.edge import click_event, impression_event
from backend.domain.events import ClickEvent, ConversionEvent, ImpressionEvent, Source, Visitor
from backend.storage.catalog import LinkInfo
from backend.storage.db.engine import Database
from backend.storage.db.models import ApiKey, User

PASSWORD = "correct horse battery"


async def create_api_key(database: Database, partner_id: int | None = None) -> str:
    key = generate_api_key()
    async with database.session(write=True) as session:
        session.add(ApiKey(name="test", key_hash=hash_api_key(key), partner_id=partner_id))
        await session.commit()
    return key


def click_id_in(location: str) -> str:
    """The click id a tracking redirect appended to its destination."""
    (click_id,) = parse_qs(urlsplit(location).query)["ct_click"]
    return click_id


async def follow_link(
    client: httpx.AsyncClient | AsyncTestClient[Any],
    code: str,
    headers: dict[str, str] | None = None,
) -> str:
    """Click a tracking link as a browser would; return the click id of the redirect."""
    response = await client.get(f"/c/{code}", headers=headers or BROWSER_HEADERS)
    assert response.status_code == 302, response.text
    return click_id_in(response.headers["location"])


@dataclass
class Programme:
    """One merchant, partner, campaign and link, made through the management API."""

    headers: dict[str, str]
    merchant: dict[str, Any]
    partner: dict[str, Any]
    campaign: dict[str, Any]
    link: dict[str, Any]


async def post_json(
    client: httpx.AsyncClient | AsyncTestClient[Any],
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
) -> dict[str, Any]:
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def create_programme(
    client: httpx.AsyncClient | AsyncTestClient[Any],
    headers: dict[str, str],
    *,
    domains: Sequence[str] = ("shop.example", "www.shop.example"),
    destination_url: str = "https://shop.example/winter?ref=aff",
    commission_percent: str = "10",
    commission_flat_minor: int = 50,
    currency: str = "EUR",
) -> Programme:
    """A merchant, partner, campaign and link, made through the management API."""
    merchant = await post_json(
        client,
        "/api/v1/merchants",
        {"name": "Shop", "currency": currency, "domains": list(domains)},
        headers,
    )
    partner = await post_json(client, "/api/v1/partners", {"name": "Blog"}, headers)
    campaign = await post_json(
        client,
        "/api/v1/campaigns",
        {
            "merchant_id": merchant["id"],
            "name": "Winter sale",
            "destination_url": destination_url,
            "commission_percent": commission_percent,
            "commission_flat_minor": commission_flat_minor,
        },
        headers,
    )
    link = await post_json(
        client,
        "/api/v1/links",
        {"partner_id": partner["id"], "campaign_id": campaign["id"]},
        headers,
    )
    return Programme(headers, merchant, partner, campaign, link)


async def make_programme(
    client: httpx.AsyncClient | AsyncTestClient[Any], database: Database
) -> Programme:
    """``create_programme`` with a new admin API key."""
    headers = {"Authorization": f"Bearer {await create_api_key(database)}"}
    return await create_programme(client, headers)


SECRET = "test-secret-key-that-is-long-enough-0123456789"
BROWSER_HEADERS = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Accept-Language": "en-GB,en;q=0.9",
}
BROWSER = BROWSER_HEADERS["User-Agent"]
SIGNER = ClickIdSigner(SECRET)
VISITOR = Visitor("198.51.100.0/24", "a" * 32, BROWSER, True)


def owners_of(programme: Programme, link: dict[str, Any] | None = None) -> LinkInfo:
    """What the edge knows of ``link`` (the programme's by default) when it stamps an event."""
    link = link or programme.link
    return LinkInfo(
        id=link["id"],
        code=link["code"],
        partner_id=link["partner_id"],
        partner_key=programme.partner["key"],
        partner_status="active",
        campaign_id=link["campaign_id"],
        merchant_id=programme.merchant["id"],
        destination_url="",
        merchant_domains=frozenset(),
        currency=programme.merchant["currency"],
        window_days=30,
        commission_bps=0,
        commission_flat_minor=0,
        status="active",
        campaign_status="active",
        campaign_destination_url="",
    )


def click_at(
    programme: Programme,
    at_ms: int,
    visitor: Visitor = VISITOR,
    link: dict[str, Any] | None = None,
) -> ClickEvent:
    """A click on ``link`` (the programme's by default) as the edge queues it, at an exact
    time (put on the stream directly)."""
    owners = owners_of(programme, link)
    click_id = SIGNER.issue(owners.id, at_ms)
    return click_event(owners, click_id, at_ms, visitor, "", "", ("",) * 5, ("",) * 5)


def impression_at(programme: Programme, at_ms: int, visitor: Visitor = VISITOR) -> ImpressionEvent:
    """An impression of the programme's link as the edge queues it, at an exact time."""
    return impression_event(owners_of(programme), new_event_id(at_ms), at_ms, visitor, "")


async def add_partner_with_link(
    client: httpx.AsyncClient | AsyncTestClient[Any], programme: Programme, name: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A second partner with a link to the programme's campaign."""
    partner = await post_json(client, "/api/v1/partners", {"name": name}, programme.headers)
    link = await post_json(
        client,
        "/api/v1/links",
        {"partner_id": partner["id"], "campaign_id": programme.campaign["id"]},
        programme.headers,
    )
    return partner, link


def require_binary(path: Path, package: str) -> Path:
    """A Debian binary the tests drive. Missing: skipped on a workstation, a failure in CI."""
    if not path.is_file():
        message = f"{path} not found: install Debian's {package} package"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so these tests must run)")
        pytest.skip(message)
    return path


POISON_MINOR = 2**63 + 1
"""An amount no database integer can hold: a conversion with it fails on every write. The edge
never sends it, so it stands for a poison event (a bug, a corrupted payload)."""


def queued_conversion(merchant_id: int, order_id: str, amount_minor: int) -> ConversionEvent:
    """A pixel conversion as the edge queues it."""
    return ConversionEvent(
        event_id=new_event_id(1_700_000_000_000),
        at_ms=1_700_000_000_000,
        merchant_id=merchant_id,
        order_id=order_id,
        amount_minor=amount_minor,
        currency="EUR",
        click_id=None,
        source=Source.PIXEL,
        event_name="sale",
        items_json=None,
        ip_prefix="",
    )


async def add_user(
    database: Database, email: str, role: str = "admin", partner_id: int | None = None
) -> None:
    async with database.session(write=True) as session:
        session.add(
            User(
                email=email,
                password_hash=hash_password(PASSWORD),
                role=role,
                partner_id=partner_id,
            )
        )
        await session.commit()


async def add_admin(database: Database) -> None:
    await add_user(database, "admin@example.com")


async def csrf_token(client: AsyncTestClient[Any]) -> str:
    await client.get("/login")
    token = client.cookies.get("csrftoken")
    assert token
    return token


async def sign_in(
    client: AsyncTestClient[Any], database: Database, email: str = "admin@example.com"
) -> None:
    """Sign in through the login form (as the admin, made here, unless ``email`` is given)."""
    if email == "admin@example.com":
        await add_admin(database)
    token = await csrf_token(client)
    response = await client.post(
        "/login", data={"email": email, "password": PASSWORD, "_csrf_token": token}
    )
    assert response.status_code == 302
