"""``clicktrail user`` and ``clicktrail apikey``: the admin pages' Users and API keys in a
terminal, under the same rules (``backend.domain.accounts``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.cli.database import existing_database
from backend.cli.output import print_table
from backend.core.settings import Settings
from backend.core.validation import FieldError
from backend.domain.accounts import change_password, create_api_key, create_user, delete_user
from backend.domain.auth import generate_password
from backend.storage.db.models import ApiKey, Role, User
from backend.web.admin.lookups import partner_names

T = TypeVar("T")


def _in_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """``work`` in a write session of the deployment's database; a refused change is one line."""

    async def run() -> T:
        async with existing_database(settings) as database, database.session(write=True) as session:
            try:
                return await work(session)
            except FieldError as error:
                raise SystemExit(error.message) from None

    return asyncio.run(run())


def _password(args: argparse.Namespace) -> str:
    return sys.stdin.readline().rstrip("\n") if args.password_stdin else generate_password()


async def _user(session: AsyncSession, email: str) -> User:
    user = await session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise SystemExit(f"no user with the email {email} ('clicktrail user list' lists them)")
    return user


def add_first_admin(settings: Settings, email: str, password: str) -> None:
    """The account ``clicktrail run`` makes on a new database."""
    _in_session(settings, lambda session: create_user(session, email, Role.ADMIN, None, password))


def cmd_user_add(settings: Settings, args: argparse.Namespace) -> None:
    role = Role(args.role)
    if role is Role.PARTNER and args.partner is None:
        raise SystemExit("--role partner needs --partner ID")
    password = _password(args)
    _in_session(
        settings, lambda session: create_user(session, args.email, role, args.partner, password)
    )
    print(f"created {role.value} {args.email}")
    if not args.password_stdin:
        print(f"password: {password}")


def cmd_user_list(settings: Settings, args: argparse.Namespace) -> None:
    async def rows(session: AsyncSession) -> list[tuple[object, ...]]:
        partners = await partner_names(session)
        users = (await session.scalars(select(User).order_by(User.email))).all()
        return [
            (
                user.email,
                user.role,
                partners.get(user.partner_id, "") if user.partner_id else "",
                f"{user.created_at:%Y-%m-%d}",
            )
            for user in users
        ]

    print_table(("email", "role", "partner", "created"), _in_session(settings, rows), "no users")


def cmd_user_password(settings: Settings, args: argparse.Namespace) -> None:
    """A new password (typed on stdin or generated); the user's sessions end."""
    password = _password(args)

    async def store(session: AsyncSession) -> None:
        await change_password(session, await _user(session, args.email), password)

    _in_session(settings, store)
    print(f"changed the password of {args.email}; its sessions have ended")
    if not args.password_stdin:
        print(f"password: {password}")


def cmd_user_delete(settings: Settings, args: argparse.Namespace) -> None:
    async def delete(session: AsyncSession) -> None:
        await delete_user(session, await _user(session, args.email))

    _in_session(settings, delete)
    print(f"deleted {args.email}; its sessions have ended")


def cmd_apikey_create(settings: Settings, args: argparse.Namespace) -> None:
    async def create(session: AsyncSession) -> str:
        _, key = await create_api_key(session, args.name, args.partner)
        return key

    key = _in_session(settings, create)
    scope = f"partner {args.partner}" if args.partner is not None else "admin"
    print(f"API key {args.name!r} ({scope}); it is shown only now:")
    print(key)


def cmd_apikey_list(settings: Settings, args: argparse.Namespace) -> None:
    async def rows(session: AsyncSession) -> list[tuple[object, ...]]:
        partners = await partner_names(session)
        keys = (await session.scalars(select(ApiKey).order_by(ApiKey.id))).all()
        return [
            (
                key.id,
                key.name,
                f"partner {partners.get(key.partner_id, key.partner_id)}"
                if key.partner_id
                else "admin",
                f"{key.created_at:%Y-%m-%d}",
            )
            for key in keys
        ]

    header = ("id", "name", "scope", "created")
    print_table(header, _in_session(settings, rows), "no API keys")


def cmd_apikey_revoke(settings: Settings, args: argparse.Namespace) -> None:
    async def revoke(session: AsyncSession) -> str:
        key = await session.get(ApiKey, args.id)
        if key is None:
            raise SystemExit(f"no API key with id {args.id} ('clicktrail apikey list' lists them)")
        await session.delete(key)
        await session.commit()
        return key.name

    name = _in_session(settings, revoke)
    print(f"revoked API key {args.id} ({name!r}); programs using it are refused from now on")
