"""Signed postbacks (DESIGN §3): checking signatures, refusing replays, rotating secrets.

A merchant's server signs the raw body: header ``Clicktrail-Signature: t=<unix seconds>,
v1=<hex HMAC-SHA256(postback secret, t + "." + body)>``. The time bounds how long a captured
request stays usable (``TOLERANCE_S`` either way, for clock skew); within that time a replay is
recognised by its signature, remembered in Redis a little longer than it could be accepted.
After a rotation the previous secret keeps working for ``GRACE_MS`` so senders can switch.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets

from redis.asyncio import Redis

from backend.core.clock import DAY_MS
from backend.storage.db.models import Merchant
from backend.storage.redis_client import REQUEST_TIMEOUT_S

SIGNATURE_HEADER = "Clicktrail-Signature"
TOLERANCE_S = 300
# A signature dated up to TOLERANCE_S ahead stays acceptable until TOLERANCE_S after its date.
REPLAY_TTL_S = 2 * TOLERANCE_S + 60
# How long a claim holds before its request has done its work (and confirms it); a sender told
# to retry (503) waits at least this long.
CLAIM_HOLD_S = 30
GRACE_MS = DAY_MS
_SIGNATURE = re.compile(r"t=(\d{1,12}),v1=([0-9a-f]{64})")


class SignatureRefused(Exception):
    """Why a postback's signature is not accepted (the message is the answer's reason)."""


def new_postback_secret() -> str:
    return secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The header value a sender puts on ``body`` at ``timestamp``."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def valid_secrets(merchant: Merchant, now_ms: int) -> list[str]:
    """The current secret, and the previous one while its grace period lasts."""
    valid = [merchant.postback_secret]
    until = merchant.previous_secret_until_ms
    if merchant.previous_postback_secret and until is not None and until > now_ms:
        valid.append(merchant.previous_postback_secret)
    return valid


def check_signature(header: str | None, body: bytes, keys: list[str], now_s: int) -> str:
    """The signature (its hex HMAC) when ``header`` signs ``body`` with one of ``keys`` and is
    recent enough; raise ``SignatureRefused`` otherwise."""
    if not header:
        raise SignatureRefused(f"missing {SIGNATURE_HEADER} header")
    match = _SIGNATURE.fullmatch(header.strip().lower())
    if match is None:
        raise SignatureRefused(f"malformed {SIGNATURE_HEADER}: expected t=<unix time>,v1=<hex>")
    timestamp, given = int(match.group(1)), match.group(2)
    if abs(now_s - timestamp) > TOLERANCE_S:
        raise SignatureRefused(
            f"timestamp {timestamp} is more than {TOLERANCE_S} s from the server's {now_s}"
        )
    # Every key is tried, so the time taken does not tell which one matched.
    matches = [hmac.compare_digest(sign(key, timestamp, body), given) for key in keys]
    if not any(matches):
        raise SignatureRefused("signature does not match the merchant's postback secret")
    return given


def rotate_secret(merchant: Merchant, now_ms: int) -> None:
    """A new secret; the one it replaces stays valid for ``GRACE_MS``."""
    merchant.previous_postback_secret = merchant.postback_secret
    merchant.previous_secret_until_ms = now_ms + GRACE_MS
    merchant.postback_secret = new_postback_secret()


class ReplayGuard:
    """Signatures already acted on, per merchant, in Redis (``SET NX`` with an expiry).

    Each call waits at most ``REQUEST_TIMEOUT_S``. A claim Redis did not answer in time may
    still be carried out when a stalled Redis wakes, with no request left to act on it: so a
    claim holds only until ``CLAIM_HOLD_S`` after its request was made (an absolute expiry,
    however late Redis sets it), and the request that did its work then ``confirm``s it for
    ``REPLAY_TTL_S``. A sender's retry after the 503's Retry-After is then no replay.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    @staticmethod
    def _key(merchant_id: int, signature: str) -> str:
        return f"ct:postback:{merchant_id}:{signature}"

    async def claim(self, merchant_id: int, signature: str, at_ms: int) -> bool:
        """True the first time; False for a replay. Redis errors (and ``TimeoutError``)
        propagate."""
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            claimed = await self._redis.set(
                self._key(merchant_id, signature),
                b"1",
                nx=True,
                pxat=at_ms + CLAIM_HOLD_S * 1000,
            )
        return bool(claimed)

    async def confirm(self, merchant_id: int, signature: str) -> None:
        """Remember a signature whose request did its work for as long as it could be replayed."""
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            await self._redis.set(self._key(merchant_id, signature), b"1", ex=REPLAY_TTL_S)

    async def release(self, merchant_id: int, signature: str) -> None:
        """Forget a signature whose request failed, so the sender's retry is not a duplicate."""
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            await self._redis.delete(self._key(merchant_id, signature))
