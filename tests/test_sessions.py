"""Sign-in sessions: the server issues every id (fresh at each sign-in), keeps only their
hashes, and a session ends with its user: deleted, or its password or role changed."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import select

from backend.cli.accounts import cmd_user_password
from backend.core.settings import Settings
from backend.domain import accounts
from backend.storage.db.engine import Database
from backend.storage.db.models import Role, User
from backend.web.app import create_app
from tests.support import PASSWORD, Programme, add_admin, add_user, csrf_token

COOKIE = "ct_session"
HOST = "testserver.local"  # the test client's host: cookies set here replace the server's


@asynccontextmanager
async def another_browser(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """A second browser with its own cookies, on its own app over the same Redis and database."""
    async with AsyncTestClient(create_app(settings)) as browser:
        browser.follow_redirects = False
        yield browser


def use_cookie(client: AsyncTestClient[Any], value: str) -> None:
    client.cookies.set(COOKIE, value, domain=HOST)


async def sign_in_as(client: AsyncTestClient[Any], email: str) -> str:
    """Sign in through the form; the session cookie the server answered with."""
    token = await csrf_token(client)
    response = await client.post(
        "/login", data={"email": email, "password": PASSWORD, "_csrf_token": token}
    )
    assert response.status_code == 302
    cookie = client.cookies.get(COOKIE)
    assert cookie
    return cookie


async def opens(client: AsyncTestClient[Any], cookie: str, path: str = "/") -> bool:
    """Whether ``cookie`` alone opens ``path`` (rather than sending the browser to sign in)."""
    use_cookie(client, cookie)
    response = await client.get(path)
    assert response.status_code in (200, 302), response.text
    return response.status_code == 200


async def user_id(database: Database, email: str) -> int:
    async with database.session() as session:
        found = await session.scalar(select(User.id).where(User.email == email))
    assert found is not None
    return found


async def test_a_session_id_the_client_made_up_is_never_adopted(
    client: AsyncTestClient[Any], database: Database, redis: Redis
) -> None:
    await add_admin(database)
    made_up = "attacker-chosen-session-id-0123456789abcdef"
    use_cookie(client, made_up)
    cookie = await sign_in_as(client, "admin@example.com")
    assert cookie != made_up
    assert await opens(client, cookie)
    assert not await opens(client, made_up)
    assert not [key async for key in redis.scan_iter(f"*{made_up}*")]


async def test_signing_in_again_issues_a_new_id_and_ends_the_session_before(
    client: AsyncTestClient[Any], database: Database, programme: Programme
) -> None:
    await add_admin(database)
    await add_user(database, "partner@example.com", Role.PARTNER, programme.partner["id"])
    as_partner = await sign_in_as(client, "partner@example.com")
    as_admin = await sign_in_as(client, "admin@example.com")
    assert as_admin != as_partner
    assert not await opens(client, as_partner)
    assert await opens(client, as_admin, "/admin/users")


async def test_a_deleted_partner_users_cookie_never_opens_a_page_again(
    client: AsyncTestClient[Any], database: Database, programme: Programme, settings: Settings
) -> None:
    """On SQLite the next user used to get the deleted one's id, and so its sessions."""
    await add_admin(database)
    await add_user(database, "partner@example.com", Role.PARTNER, programme.partner["id"])
    deleted_id = await user_id(database, "partner@example.com")
    async with another_browser(settings) as partner_browser:
        partner_cookie = await sign_in_as(partner_browser, "partner@example.com")
        assert await opens(partner_browser, partner_cookie)

        await sign_in_as(client, "admin@example.com")
        token = client.cookies.get("csrftoken")
        deleted = await client.post(
            f"/admin/users/{deleted_id}/delete", data={"_csrf_token": token}
        )
        assert deleted.status_code == 303
        assert not await opens(partner_browser, partner_cookie)

        form = {"email": "new-admin@example.com", "role": "admin", "_csrf_token": token}
        created = await client.post("/admin/users/new", data={**form, "partner_id": ""})
        assert created.status_code == 200  # the generated password is shown
        assert not await opens(partner_browser, partner_cookie, "/admin/users")
        assert not await opens(partner_browser, partner_cookie)
        assert await user_id(database, "new-admin@example.com") > deleted_id  # never reused


async def test_a_new_user_given_a_deleted_users_id_gets_none_of_its_sessions(
    client: AsyncTestClient[Any], database: Database, programme: Programme
) -> None:
    """Sessions name their user by more than its id (ids can come back: a restored backup)."""
    await add_user(database, "partner@example.com", Role.PARTNER, programme.partner["id"])
    cookie = await sign_in_as(client, "partner@example.com")
    async with database.session(write=True) as session:
        partner = await session.scalar(select(User).where(User.email == "partner@example.com"))
        assert partner is not None
        await session.delete(partner)
        await session.flush()
        admin = User(id=partner.id, email="admin@example.com", password_hash="-", role="admin")
        session.add(admin)
        await session.commit()
    assert not await opens(client, cookie)
    assert not await opens(client, cookie, "/admin/users")


async def test_a_password_or_role_change_ends_the_users_sessions(
    client: AsyncTestClient[Any],
    database: Database,
    programme: Programme,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await add_user(database, "partner@example.com", Role.PARTNER, programme.partner["id"])
    await add_admin(database)
    partner_cookie = await sign_in_as(client, "partner@example.com")
    admin_cookie = await sign_in_as(client, "admin@example.com")

    async with database.session(write=True) as session:
        partner = await session.scalar(select(User).where(User.email == "partner@example.com"))
        assert partner is not None
        partner.role, partner.partner_id = Role.ADMIN.value, None
        accounts.end_sessions(partner)
        await session.commit()
    assert not await opens(client, partner_cookie)
    assert await opens(client, admin_cookie)

    command = argparse.Namespace(email="Admin@Example.com", password_stdin=False)
    await asyncio.to_thread(cmd_user_password, settings, command)  # it runs its own event loop
    assert not await opens(client, admin_cookie)
    new_password = capsys.readouterr().out.rsplit("password: ", 1)[1].strip()
    token = client.cookies["csrftoken"]
    for password, status in ((PASSWORD, 400), (new_password, 302)):
        form = {"email": "admin@example.com", "password": password, "_csrf_token": token}
        assert (await client.post("/login", data=form)).status_code == status


async def test_the_store_holds_nothing_that_works_as_a_cookie(
    client: AsyncTestClient[Any], database: Database, redis: Redis
) -> None:
    """A copy of Redis (a backup, a replica) cannot be replayed to sign in."""
    await add_admin(database)
    cookie = await sign_in_as(client, "admin@example.com")
    keys = [key.decode() async for key in redis.scan_iter("ct:session:*")]
    assert keys
    assert not [key for key in keys if cookie in key]
    for key in keys:
        assert not await opens(client, key.removeprefix("ct:session:"))
    assert await opens(client, cookie)
