"""Who sent a request, kept without personal data.

The client address is believed from X-Forwarded-For only when the peer is a trusted proxy. It
never leaves this module raw: events carry the network prefix (/24 for IPv4, /48 for IPv6) and a
visitor hash salted with a random value that rotates daily and lives only in Redis, until its
day is over, so yesterday's hashes cannot be recomputed once the salt is gone. Gone from disk
too: a daily job deletes past salts and has Redis rewrite its append-only file, which would
keep them otherwise.

Working out the address (parsing it, checking it against the trusted proxies, its prefix and
country) costs more than the rest of a request's tracking, and the same visitors come back, so
``Clients`` remembers the answers for the most recent addresses: in this process's memory
only, a bounded number, never written anywhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from litestar.types import Scope
from redis.asyncio import Redis
from redis.exceptions import RedisError

from backend.core.clock import DAY_S
from backend.core.settings import IpNetwork
from backend.domain.events import Visitor
from backend.domain.geo import GEOIP2FAST, Address, Countries
from backend.storage.erasure import rewrite_append_only_file
from backend.storage.redis_client import REQUEST_TIMEOUT_S

SALT_RETRY_S = 10.0
# A salt outlives its day by this much: a process whose clock is a little behind still finds it.
SALT_GRACE_S = 300
PAST_SALT_DAYS = 2  # the days before today whose salts the daily job deletes (an earlier
# version kept them two days)
_V4_PREFIX_MASK = (2**32 - 1) ^ (2**8 - 1)
_V6_PREFIX_MASK = (2**128 - 1) ^ (2**80 - 1)
MAX_USER_AGENT = 512
CLIENTS_REMEMBERED = 4096
# A longer X-Forwarded-For is worked out afresh each time rather than kept as a cache key.
MAX_REMEMBERED_FORWARDED = 256


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[IpNetwork]
) -> Address | None:
    """The first address, from the right, that is not a trusted proxy.

    A peer that is not an IP address is a unix socket, so a local proxy, and trusted as such.
    """
    try:
        address = ipaddress.ip_address(peer) if peer else None
    except ValueError:
        address = None
    if address is not None and not any(address in network for network in trusted):
        return address
    hops = [part.strip() for part in forwarded_for.split(",")] if forwarded_for else []
    for raw in reversed(hops):
        try:
            address = ipaddress.ip_address(raw)
        except ValueError:
            return address  # a malformed hop: stop at the last one we could trust
        if not any(address in network for network in trusted):
            return address
    return address


def request_address(
    scope: Scope, forwarded_for: bytes | None, trusted: Sequence[IpNetwork]
) -> Address | None:
    """``client_address`` of an ASGI request, given its X-Forwarded-For header (if any)."""
    return _header_address(_peer(scope), forwarded_for, trusted)


def _peer(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


def _header_address(
    peer: str | None, forwarded_for: bytes | None, trusted: Sequence[IpNetwork]
) -> Address | None:
    """``client_address`` given the X-Forwarded-For header's raw bytes."""
    return client_address(peer, forwarded_for.decode("latin-1") if forwarded_for else None, trusted)


def _network(address: Address | None) -> Address | None:
    """The first address of ``address``'s prefix (/24 for IPv4, /48 for IPv6)."""
    if address is None:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        return ipaddress.IPv4Address(int(address) & _V4_PREFIX_MASK)
    return ipaddress.IPv6Address(int(address) & _V6_PREFIX_MASK)


def network_prefix(address: Address | None) -> str:
    return _prefix_text(_network(address))


def _prefix_text(network: Address | None) -> str:
    if network is None:
        return ""
    return f"{network}/{24 if isinstance(network, ipaddress.IPv4Address) else 48}"


@dataclass(frozen=True, slots=True)
class Client:
    """What the events need of a client address, worked out once: ``text`` goes into the
    visitor hash, ``prefix`` into the events, ``network`` (the prefix's first address) to the
    country lookup."""

    text: str
    prefix: str
    network: Address | None

    @classmethod
    def of(cls, address: Address | None) -> Client:
        network = _network(address)
        return cls(text=str(address), prefix=_prefix_text(network), network=network)


class Clients:
    """``Client.of(request_address(...))`` for the last ``size`` (peer, X-Forwarded-For) pairs."""

    def __init__(self, trusted: Sequence[IpNetwork], size: int = CLIENTS_REMEMBERED) -> None:
        self._trusted = tuple(trusted)
        self._remembered = lru_cache(maxsize=size)(self._work_out)

    def _work_out(self, peer: str | None, forwarded_for: bytes | None) -> Client:
        return Client.of(_header_address(peer, forwarded_for, self._trusted))

    def of_request(self, scope: Scope, forwarded_for: bytes | None) -> Client:
        peer = _peer(scope)
        if forwarded_for is not None and len(forwarded_for) > MAX_REMEMBERED_FORWARDED:
            return self._work_out(peer, forwarded_for)
        return self._remembered(peer, forwarded_for)


def _salt_key(day: int) -> str:
    return f"ct:salt:{datetime.fromtimestamp(day * DAY_S, UTC):%Y-%m-%d}"


class DailySalt:
    """The salt of the current UTC day, shared by all processes through Redis.

    Fetching it waits at most ``REQUEST_TIMEOUT_S``. Without an answer, a process-local salt
    keeps hashing private and the request going; uniqueness may then differ between processes
    until the shared salt is fetched, tried again every ``SALT_RETRY_S``, which beats failing
    (or holding up) the request.
    """

    def __init__(
        self, redis: Redis, retry_s: float = SALT_RETRY_S, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = redis
        self._retry_s = retry_s
        self._clock = clock
        self._day = -1  # the day of the salt fetched from Redis
        self._salt = b""
        self._local_day = -1  # the day of the local salt, while Redis does not answer
        self._next_try = 0.0

    async def current(self) -> bytes:
        day = int(self._clock() // DAY_S)  # the UTC day number: cheap to compare per request
        if day != self._day and time.monotonic() >= self._next_try:
            try:
                self._salt = await self._fetch(day)
                self._day = day
            except (RedisError, OSError):
                self._next_try = time.monotonic() + self._retry_s
        if day != self._day and day != self._local_day:
            self._salt = secrets.token_bytes(32)
            self._local_day = day
        return self._salt

    async def _fetch(self, day: int) -> bytes:
        key, expires = _salt_key(day), (day + 1) * DAY_S + SALT_GRACE_S
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            await self._redis.set(key, secrets.token_bytes(32), nx=True, exat=expires)
            stored = await self._redis.get(key)
        if not isinstance(stored, bytes):
            raise RedisError(f"{key} is gone")  # expired between the two commands
        return stored


async def forget_past_salts(redis: Redis, now_s: float | None = None) -> bool:
    """Delete the salts of the days before today (expired already, unless an earlier version
    kept them) and have Redis rewrite its append-only file, where they stay until then; True
    once that is done."""
    today = int((time.time() if now_s is None else now_s) // DAY_S)
    await redis.delete(*(_salt_key(today - back) for back in range(1, PAST_SALT_DAYS + 1)))
    return await rewrite_append_only_file(redis)


def describe_visitor(
    address: Address | None,
    user_agent: str,
    accept_language: bool,
    salt: bytes,
    *,
    locate: bool = False,
    countries: Countries = GEOIP2FAST,
) -> Visitor:
    """What the events keep of the visitor; with ``locate`` its country too (looked up here,
    the last place the address is known, in ``countries``)."""
    located = countries if locate else None
    return describe_client(Client.of(address), user_agent, accept_language, salt, located)


def describe_client(
    client: Client,
    user_agent: str,
    accept_language: bool,
    salt: bytes,
    countries: Countries | None = None,
) -> Visitor:
    """``describe_visitor`` of an address already worked out (``Clients``); its country from
    ``countries``, none without."""
    digest = hashlib.blake2b(
        f"{client.text}\x00{user_agent}".encode(), key=salt, digest_size=16
    ).hexdigest()
    return Visitor(
        ip_prefix=client.prefix,
        visitor_hash=digest,
        user_agent=user_agent[:MAX_USER_AGENT],
        accept_language=accept_language,
        country=countries.of_network(client.network) if countries and client.network else "",
    )
