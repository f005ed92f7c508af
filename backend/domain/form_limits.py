"""Rate limits of the public forms (applications, password reset requests), per client and per
e-mail address, without recording either: Redis keys are keyed hashes (the app's secret key)
of the client as ``login_throttle.client_identity`` sees it and of the address, gone when the
window ends. Every submission counts, accepted or not."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from redis.asyncio import Redis

from backend.domain.login_throttle import client_identity


@dataclass(frozen=True, slots=True)
class FormLimit:
    """At most ``per_client`` submissions of ``form`` from one client and ``per_email`` for
    one address in ``window_s`` seconds."""

    form: str
    per_client: int
    per_email: int
    window_s: int


APPLY = FormLimit("apply", per_client=10, per_email=3, window_s=3600)
RESET = FormLimit("reset", per_client=20, per_email=3, window_s=3600)


async def admit(
    redis: Redis,
    secret_key: str,
    limit: FormLimit,
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
    email: str,
) -> bool:
    """Count this submission; False when the client or the address is over its limit."""
    key = hashlib.sha256(f"form-limit\x00{secret_key}".encode()).digest()

    def digest(text: str) -> str:
        return hashlib.blake2b(text.encode(), key=key, digest_size=16).hexdigest()

    keys = (
        f"ct:form:{limit.form}:client:{digest(client_identity(address))}",
        f"ct:form:{limit.form}:email:{digest(email.strip().lower())}",
    )
    async with redis.pipeline(transaction=True) as pipe:
        for name in keys:
            pipe.set(name, 0, ex=limit.window_s, nx=True)
            pipe.incr(name)
        _, by_client, _, by_email = await pipe.execute()
    return bool(by_client <= limit.per_client and by_email <= limit.per_email)
