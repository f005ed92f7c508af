"""Helpers shared by the tests: API keys, a ready-made affiliate programme, browser headers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from litestar.testing import AsyncTestClient

from backend.auth import generate_api_key, hash_api_key
from backend.db.engine import Database
from backend.db.models import ApiKey


async def create_api_key(database: Database, partner_id: int | None = None) -> str:
    key = generate_api_key()
    async with database.session(write=True) as session:
        session.add(ApiKey(name="test", key_hash=hash_api_key(key), partner_id=partner_id))
        await session.commit()
    return key


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


async def make_programme(
    client: httpx.AsyncClient | AsyncTestClient[Any],
    database: Database,
    commission_percent: str = "10",
    commission_flat_minor: int = 50,
    currency: str = "EUR",
) -> Programme:
    headers = {"Authorization": f"Bearer {await create_api_key(database)}"}
    merchant = await post_json(
        client,
        "/api/v1/merchants",
        {"name": "Shop", "currency": currency, "domains": ["shop.example", "www.shop.example"]},
        headers,
    )
    partner = await post_json(client, "/api/v1/partners", {"name": "Blog"}, headers)
    campaign = await post_json(
        client,
        "/api/v1/campaigns",
        {
            "merchant_id": merchant["id"],
            "name": "Winter sale",
            "destination_url": "https://shop.example/winter?ref=aff",
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


BROWSER_HEADERS = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Accept-Language": "en-GB,en;q=0.9",
}
