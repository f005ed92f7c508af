"""Sign-in throttling per client and per (client, account): guessing from one client stops,
nobody locks anyone else out, and unknown accounts cost the same work as known ones."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from backend.domain.login_throttle import ACCOUNT_FAILURES, CLIENT_FAILURES
from backend.storage.db.engine import Database
from tests.support import PASSWORD, add_admin, csrf_token

ATTACKER = "203.0.113.7"
ADMIN = "198.51.100.20"


async def attempt(
    client: AsyncTestClient[Any], address: str, email: str, password: str
) -> httpx.Response:
    """A sign-in from ``address`` (the test client's peer is no IP, so a trusted local proxy:
    the app believes X-Forwarded-For, as behind nginx)."""
    return await client.post(
        "/login",
        data={"email": email, "password": password, "_csrf_token": client.cookies["csrftoken"]},
        headers={"X-Forwarded-For": address},
    )


async def test_guessing_one_account_locks_out_the_guesser_not_the_owner(
    client: AsyncTestClient[Any], database: Database
) -> None:
    await add_admin(database)
    await csrf_token(client)
    statuses = [
        (await attempt(client, ATTACKER, "admin@example.com", "guess")).status_code
        for _ in range(ACCOUNT_FAILURES + 1)
    ]
    assert statuses == [400] * ACCOUNT_FAILURES + [429]
    refused = await attempt(client, ATTACKER, "admin@example.com", PASSWORD)
    assert refused.status_code == 429
    assert "Too many attempts" in refused.text

    owner = await attempt(client, ADMIN, "admin@example.com", PASSWORD)
    assert owner.status_code == 302


async def test_guessing_across_accounts_from_one_client_is_throttled(
    client: AsyncTestClient[Any], database: Database
) -> None:
    await add_admin(database)
    await csrf_token(client)
    statuses = [
        (await attempt(client, ATTACKER, f"user{number}@example.com", "guess")).status_code
        for number in range(CLIENT_FAILURES + 1)
    ]
    assert statuses == [400] * CLIENT_FAILURES + [429]
    assert (await attempt(client, ATTACKER, "admin@example.com", PASSWORD)).status_code == 429
    assert (await attempt(client, ADMIN, "admin@example.com", PASSWORD)).status_code == 302


async def test_throttle_keys_lead_back_to_no_address(
    client: AsyncTestClient[Any], database: Database, redis: Redis
) -> None:
    await csrf_token(client)
    await attempt(client, ATTACKER, "admin@example.com", "guess")
    keys = [key.decode() async for key in redis.scan_iter("*")]
    assert keys
    assert not [key for key in keys if ATTACKER in key or "203.0.113" in key]
    assert not [key for key in keys if "admin@example.com" in key]


async def test_unknown_and_known_accounts_cost_one_password_verification_each(
    client: AsyncTestClient[Any], database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answering unknown accounts faster would tell which accounts exist."""
    verifications = 0
    verify = PasswordHasher.verify

    def counted(self: PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        nonlocal verifications
        verifications += 1
        return verify(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counted)
    await add_admin(database)
    await csrf_token(client)

    unknown = await attempt(client, ATTACKER, "nobody@example.com", PASSWORD)
    assert (unknown.status_code, verifications) == (400, 1)
    known = await attempt(client, ATTACKER, "admin@example.com", "guess")
    assert (known.status_code, verifications) == (400, 2)
    assert unknown.text.replace("nobody@", "admin@") == known.text
