"""Sending signed postbacks as a merchant's server would."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from litestar.testing import AsyncTestClient

from backend.domain.affiliate.postback import signature_header
from tests.support import Programme

PATH = "/api/v1/postback"


def signed(
    body: dict[str, Any], secret: str, at: int | None = None
) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    stamp = int(time.time()) if at is None else at
    return raw, {
        "content-type": "application/json",
        "Clicktrail-Signature": signature_header(secret, stamp, raw),
    }


async def send(
    client: AsyncTestClient[Any],
    programme: Programme,
    body: dict[str, Any],
    secret: str | None = None,
    at: int | None = None,
) -> httpx.Response:
    merchant = {"merchant": programme.merchant["key"]}
    raw, headers = signed(merchant | body, secret or programme.merchant["postback_secret"], at)
    return await client.post(PATH, content=raw, headers=headers)


def sale(order_id: str, amount: str = "25.00", **extra: Any) -> dict[str, Any]:
    return {"type": "conversion", "order_id": order_id, "amount": amount, **extra}
