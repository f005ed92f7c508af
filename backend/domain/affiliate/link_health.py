"""Link health checks: does each active link's destination still answer? Run by an arq cron job.

Fetching URLs that admins typed is a server-side request forgery risk (DESIGN §7): a destination
could name an internal service or the cloud metadata address. So each host is resolved first,
every address it resolves to must be public (not private, loopback, link-local, multicast,
reserved or unspecified), and the connection goes to that checked address (so DNS cannot
answer differently a moment later); redirects are followed by the same rules, up to a limit.
``allowed`` networks skip the refusal: for tests and intranet shops, never loopback in
production. A destination is ``ok`` when it answers below 400 (HEAD, then GET if HEAD fails).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import SplitResult, urljoin, urlsplit

from sqlalchemy import func, select, update

from backend.core.settings import IpNetwork
from backend.domain.destinations import expand
from backend.storage.db.engine import Database
from backend.storage.db.models import Campaign, Link

USER_AGENT = "Clicktrail-LinkCheck/1 (+link health check)"
TIMEOUT_S = 5.0
MAX_REDIRECTS = 5
CONCURRENCY = 8
MAX_DETAIL = 255
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_REFUSED_KINDS = (  # most specific first: Python counts most of these as private too
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
    ("is_unspecified", "unspecified"),
    ("is_reserved", "reserved"),
    ("is_private", "private"),
)


class CheckFailed(Exception):
    """The destination is broken or may not be fetched; the message says why."""


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str


def refusal(address: IpAddress, allowed: tuple[IpNetwork, ...] = ()) -> str | None:
    """Why ``address`` must not be fetched, or None when it may be."""
    if any(address in network for network in allowed):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for attribute, kind in _REFUSED_KINDS:
        if getattr(address, attribute):
            return f"{address} is a {kind} address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


async def resolve_public(host: str, port: int, allowed: tuple[IpNetwork, ...]) -> str:
    """The address to connect to; every address ``host`` resolves to must be acceptable."""
    try:
        addresses = [ipaddress.ip_address(host)]
        named = ""
    except ValueError:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        named = f"{host} resolves to "
    if not addresses:
        raise CheckFailed(f"{host} does not resolve")
    for address in addresses:
        reason = refusal(address, allowed)
        if reason is not None:
            raise CheckFailed(f"refused: {named}{reason}")
    return str(addresses[0])


async def connect_public(
    url: str, allowed: tuple[IpNetwork, ...]
) -> tuple[SplitResult, asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to ``url`` at its checked public address (http or https, no user info):
    the one way every outgoing request of Clicktrail leaves."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CheckFailed(f"not an http(s) URL: {url[:100]}")
    if "@" in parts.netloc:
        raise CheckFailed("URLs with user info are not fetched")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = await resolve_public(parts.hostname, port, allowed)
    context = ssl.create_default_context() if parts.scheme == "https" else None
    reader, writer = await asyncio.open_connection(
        address, port, ssl=context, server_hostname=parts.hostname if context else None
    )
    return parts, reader, writer


async def read_head(reader: asyncio.StreamReader) -> tuple[int, list[str]]:
    """The status code and header lines of an HTTP answer."""
    status_line, *header_lines = (
        (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    )
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise CheckFailed(f"not an HTTP answer: {status_line[:80]!r}")
    return int(fields[1]), header_lines


async def _status(url: str, method: str, allowed: tuple[IpNetwork, ...]) -> tuple[int, str]:
    """One request to ``url`` at its checked address: the status and any Location header."""
    parts, reader, writer = await connect_public(url, allowed)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        writer.write(
            f"{method} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: {USER_AGENT}\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n".encode("latin-1")
        )
        await writer.drain()
        status, header_lines = await read_head(reader)
    finally:
        writer.close()
    location = ""
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "location":
            location = value.strip()
    return status, location


async def check_url(
    url: str, allowed: tuple[IpNetwork, ...] = (), timeout_s: float = TIMEOUT_S
) -> Health:
    """Follow ``url`` (and its redirects) and say whether it answers."""
    try:
        async with asyncio.timeout(timeout_s):
            for _ in range(MAX_REDIRECTS + 1):
                status, location = await _status(url, "HEAD", allowed)
                if status >= 400:  # some servers refuse HEAD; GET decides
                    status, location = await _status(url, "GET", allowed)
                if 300 <= status < 400 and location:
                    url = urljoin(url, location)
                    continue
                return Health(status < 400, f"HTTP {status}")
            return Health(False, f"more than {MAX_REDIRECTS} redirects")
    except CheckFailed as failed:
        return Health(False, str(failed)[:MAX_DETAIL])
    except TimeoutError:
        return Health(False, f"no answer within {timeout_s:g} s")
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
        return Health(False, f"{type(error).__name__}: {error}"[:MAX_DETAIL])


async def check_links(
    database: Database, allowed: tuple[IpNetwork, ...] = (), timeout_s: float = TIMEOUT_S
) -> dict[str, int]:
    """Check every active link's destination once per distinct URL; return counts by health."""
    destination = func.coalesce(Link.destination_url, Campaign.destination_url)
    async with database.session() as session:
        links = (
            await session.execute(
                select(Link.id, destination)
                .join(Campaign, Campaign.id == Link.campaign_id)
                .where(Link.status == "active")
            )
        ).all()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def check(url: str) -> Health:
        async with gate:  # a template is checked with its macros empty, as an untracked visit
            return await check_url(expand(url, {}), allowed, timeout_s)

    urls = sorted({url for _, url in links})
    found = dict(zip(urls, await asyncio.gather(*map(check, urls)), strict=True))
    by_health: dict[Health, list[int]] = defaultdict(list)
    for link_id, url in links:
        by_health[found[url]].append(link_id)
    checked_at = datetime.now(UTC)
    async with database.writing() as connection:
        for health, link_ids in by_health.items():
            await connection.execute(
                update(Link)
                .where(Link.id.in_(link_ids))
                .values(
                    health="ok" if health.ok else "broken",
                    health_detail=health.detail,
                    last_checked_at=checked_at,
                )
            )
    counts = {"ok": 0, "broken": 0}
    for health, link_ids in by_health.items():
        counts["ok" if health.ok else "broken"] += len(link_ids)
    return counts
