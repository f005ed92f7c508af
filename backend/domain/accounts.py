"""People and programs that may sign in: users (argon2 passwords) and API keys (shown once).

The CLI and the admin pages create and change them through these functions, so the rules
(password length, a partner user's partner, unique emails, sessions ending with a change of
password or role) live in one place.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.validation import FieldError
from backend.domain.auth import generate_api_key, hash_api_key, hash_password
from backend.storage.db.models import ApiKey, Partner, Role, User, new_session_epoch

MIN_PASSWORD_LENGTH = 10


async def _check_partner(session: AsyncSession, partner_id: int | None) -> None:
    if partner_id is not None and await session.get(Partner, partner_id) is None:
        raise FieldError("partner_id", f"no partner with id {partner_id}")


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise FieldError(
            "password", f"the password must have at least {MIN_PASSWORD_LENGTH} characters"
        )


async def create_user(
    session: AsyncSession, email: str, role: Role, partner_id: int | None, password: str
) -> User:
    """A new user; a partner user sees only ``partner_id``'s data, an admin everything."""
    check_password(password)
    if role is Role.PARTNER and partner_id is None:
        raise FieldError("partner_id", "a partner user needs a partner")
    await _check_partner(session, partner_id)
    user = User(
        email=email.strip().lower(),
        password_hash=hash_password(password),
        role=role.value,
        partner_id=partner_id if role is Role.PARTNER else None,
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise FieldError("email", f"a user with the email {user.email} exists") from None
    await session.refresh(user)
    return user


def end_sessions(user: User) -> None:
    """End every session of ``user`` (they carry its epoch) once the caller commits. Whatever
    changes a user's password, role or partner calls it; deleting the user ends them anyway."""
    user.session_epoch = new_session_epoch()


async def change_password(session: AsyncSession, user: User, password: str) -> None:
    """A new password for ``user``; whoever was signed in with the old one is signed out."""
    check_password(password)
    user.password_hash = hash_password(password)
    end_sessions(user)
    await session.commit()


async def delete_user(session: AsyncSession, user: User) -> None:
    """Delete ``user`` (its sessions end with it), but never the last admin: nobody could
    manage the programme or sign in to make another."""
    if user.role == Role.ADMIN.value:
        admins = await session.scalar(
            select(func.count()).select_from(User).where(User.role == Role.ADMIN.value)
        )
        if (admins or 0) <= 1:
            raise FieldError("email", f"{user.email} is the only admin: add another one first")
    await session.delete(user)
    await session.commit()


async def create_api_key(
    session: AsyncSession, name: str, partner_id: int | None
) -> tuple[ApiKey, str]:
    """A new key and its only plain copy: the database keeps its hash."""
    await _check_partner(session, partner_id)
    key = generate_api_key()
    row = ApiKey(name=name, key_hash=hash_api_key(key), partner_id=partner_id)
    session.add(row)
    await session.commit()
    await session.refresh(row)
    return row, key
