"""Sign-in throttling per client and per (client, account), without recording addresses.

A client is its address as the app resolves it through trusted proxies (an IPv6 client is its
/64, which one subscriber usually holds whole). Failures count against the client (spraying
many accounts) and against the client on that account (guessing one password); either limit
stops that client for the rest of the window, and no one else: the owner signing in from
another client is never locked out by someone's guesses, until the account as a whole has
drawn ``ACCOUNT_LOCKOUT`` failures in the window from all clients together (a distributed
guess): then it is locked for the rest of the window, whoever signs in, and a password reset
by e-mail (``unlock``) opens it again. Each attempt counts before its
password is checked (parallel guesses cannot slip past a limit) and a success gives its count
back. Redis keys are keyed hashes (the app's secret key, which Redis never holds) of the client
and the account, gone when the window ends.
"""

from __future__ import annotations

import hashlib
import ipaddress

from redis.asyncio import Redis

ACCOUNT_FAILURES = 10  # per client and account, per window
ACCOUNT_LOCKOUT = 100  # per account over all clients, per window
CLIENT_FAILURES = 30  # per client over all accounts, per window
WINDOW_S = 900
_IPV6_CLIENT_BITS = 64


def _key(secret_key: str) -> bytes:
    return hashlib.sha256(f"login-throttle\x00{secret_key}".encode()).digest()


def _lock_key(key: bytes, email: str) -> str:
    return f"ct:login:lock:{hashlib.blake2b(email.encode(), key=key, digest_size=16).hexdigest()}"


async def unlock(redis: Redis, secret_key: str, email: str) -> None:
    """Open a locked account again (its owner proved the address by a reset link)."""
    await redis.delete(_lock_key(_key(secret_key), email))


def client_identity(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> str:
    if address is None:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, _IPV6_CLIENT_BITS), strict=False))
    return str(address)


class LoginThrottle:
    """The sign-in attempts of one client, on one account."""

    def __init__(
        self,
        redis: Redis,
        secret_key: str,
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
        email: str,
    ) -> None:
        key = _key(secret_key)
        client = client_identity(address)

        def digest(text: str) -> str:
            return hashlib.blake2b(text.encode(), key=key, digest_size=16).hexdigest()

        self._redis = redis
        self._client_key = f"ct:login:client:{digest(client)}"
        account = digest("\x00".join((client, email)))
        self._account_key = f"ct:login:account:{account}"
        self._lock_key = _lock_key(key, email)

    async def admit(self) -> bool:
        """Count this attempt; False when the client, or the client on this account, is over
        its limit for the window, or the account is locked."""
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in (self._client_key, self._account_key, self._lock_key):
                pipe.set(key, 0, ex=WINDOW_S, nx=True)  # the window starts at the first attempt
                pipe.incr(key)
            _, client_attempts, _, account_attempts, _, all_attempts = await pipe.execute()
        return bool(
            client_attempts <= CLIENT_FAILURES
            and account_attempts <= ACCOUNT_FAILURES
            and all_attempts <= ACCOUNT_LOCKOUT
        )

    async def succeeded(self) -> None:
        """The right password: this account's failures are forgotten and the client's count
        is given back this attempt."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._account_key, self._lock_key)
            # A key that expired meanwhile comes back at 0 with a time to live, never without.
            pipe.set(self._client_key, 1, ex=WINDOW_S, nx=True)
            pipe.decr(self._client_key)
            await pipe.execute()
