"""Password reset by e-mail for every account, admins too, and invitations (an invited
partner's first password is set the same way).

Asking for a reset answers the same whether the address has an account or not (nothing tells
which addresses exist); the mail's link holds a single-use token that lives 30 minutes
(``backend.domain.account_tokens``). Setting the password ends every session of the account
(``accounts.change_password``), and the token is spent only by a password that is accepted.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.validation import FieldError
from backend.domain import account_tokens
from backend.domain.accounts import check_password, end_sessions
from backend.domain.auth import generate_password, hash_password
from backend.domain.mail import enqueue
from backend.storage.db.models import Partner, Role, TokenPurpose, User


async def request_reset(session: AsyncSession, email: str, public_url: str) -> bool:
    """Mail a reset link to ``email`` if it has an account (whether it had is the return
    value, for the caller's logs and tests, never for the person asking)."""
    user = await session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        return False
    token = account_tokens.issue(session, TokenPurpose.RESET, user_id=user.id)
    enqueue(
        session,
        to=user.email,
        template="password_reset",
        context={"link": f"{public_url}/reset/{token}", "minutes": 30},
    )
    await session.commit()
    return True


async def set_password(
    session: AsyncSession, token: str, purpose: TokenPurpose, password: str
) -> User | None:
    """The new password of the token's account, or None when the token is unknown, used or
    expired; ``FieldError`` for a password the rules refuse (the token stays usable)."""
    check_password(password)
    row = await account_tokens.redeem(session, token, purpose)
    user = await session.get(User, row.user_id) if row and row.user_id is not None else None
    if user is None:
        await session.rollback()
        return None
    user.password_hash = hash_password(password)
    end_sessions(user)
    await session.commit()
    return user


async def invite(
    session: AsyncSession, email: str, partner_id: int, public_url: str, inviter: str
) -> User:
    """A partner user for ``email`` whose password the invitation's link sets; the mail goes
    out with the same commit."""
    partner = await session.get(Partner, partner_id) if 0 < partner_id < 2**31 else None
    if partner is None:
        raise FieldError("partner_id", f"no partner with id {partner_id}")
    user = User(
        email=email.strip().lower(),
        password_hash=hash_password(generate_password()),  # unknown to anyone until set
        role=Role.PARTNER.value,
        partner_id=partner.id,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise FieldError("email", f"a user with the email {user.email} exists") from None
    token = account_tokens.issue(session, TokenPurpose.INVITE, user_id=user.id)
    enqueue(
        session,
        to=user.email,
        template="invitation",
        context={
            "link": f"{public_url}/invite/{token}",
            "partner": partner.name,
            "inviter": inviter,
            "days": 7,
        },
    )
    await session.commit()
    return user
