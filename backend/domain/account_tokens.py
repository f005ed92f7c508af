"""Links sent by e-mail (password reset, invitation, application confirmation): single-use and
short-lived.

A token is 256 random bits; only its SHA-256 is stored. Nothing needs a signature: a token is
believed only when its hash names a stored row that is unexpired and unused, and redeeming it
marks it used in the same UPDATE that checks it, so two requests can never both use one.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import now_ms
from backend.storage.db.models import AccountToken, TokenPurpose

MINUTE_MS = 60_000
LIFETIME_MS = {
    TokenPurpose.RESET: 30 * MINUTE_MS,
    TokenPurpose.CONFIRM: 48 * 60 * MINUTE_MS,
    TokenPurpose.INVITE: 7 * 24 * 60 * MINUTE_MS,
}
MAX_TOKEN = 100  # issued tokens are 43 characters; a longer one names nothing


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(
    session: AsyncSession,
    purpose: TokenPurpose,
    *,
    user_id: int | None = None,
    application_id: int | None = None,
) -> str:
    """A new token (its only plain copy) added to ``session``; valid once the caller commits."""
    token = secrets.token_urlsafe(32)
    now = now_ms()
    session.add(
        AccountToken(
            token_hash=_hash(token),
            purpose=purpose.value,
            user_id=user_id,
            application_id=application_id,
            expires_ms=now + LIFETIME_MS[purpose],
            created_ms=now,
        )
    )
    return token


async def find(session: AsyncSession, token: str, purpose: TokenPurpose) -> AccountToken | None:
    """The token's row while it may still be used (to show its form), else None."""
    if not token or len(token) > MAX_TOKEN:
        return None
    row = await session.scalar(
        select(AccountToken).where(
            AccountToken.token_hash == _hash(token), AccountToken.purpose == purpose.value
        )
    )
    if row is None or row.used_ms is not None or row.expires_ms <= now_ms():
        return None
    return row


async def redeem(session: AsyncSession, token: str, purpose: TokenPurpose) -> AccountToken | None:
    """Use the token up (in the caller's transaction) and return its row, or None when it is
    unknown, used or expired."""
    row = await find(session, token, purpose)
    if row is None:
        return None
    now = now_ms()
    result = await session.execute(
        update(AccountToken)
        .where(AccountToken.id == row.id, AccountToken.used_ms.is_(None))
        .values(used_ms=now)
        .execution_options(synchronize_session=False)
    )
    return row if result.rowcount == 1 else None  # type: ignore[attr-defined]
