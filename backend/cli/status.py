"""``clicktrail status``: what ``/readyz`` of the running instance knows, for a person.

The instance is the one ``clicktrail run`` recorded under var/ (``backend.cli.instance``), else
``--url``, else ``PUBLIC_URL``. The exit status says it too: 0 ready, 1 up but not ready, 3 not
running (as ``systemctl status`` does)."""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, datetime

import httpx

from backend.cli.instance import running_url
from backend.core.clock import now_ms
from backend.core.settings import Settings

READY, NOT_READY, NOT_RUNNING = 0, 1, 3
TIMEOUT_S = 5.0


def cmd_status(settings: Settings, args: argparse.Namespace) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its request line is not the answer
    url = (args.url or running_url(settings.var_dir) or settings.public_url).rstrip("/")
    try:
        answer = httpx.get(f"{url}/readyz", timeout=TIMEOUT_S)
        body = answer.json()
    except (httpx.HTTPError, ValueError) as error:
        print(f"Clicktrail is not running at {url} ({type(error).__name__}: {error})")
        raise SystemExit(NOT_RUNNING) from None
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        print("\n".join(describe(url, body)))
    raise SystemExit(READY if body.get("ready") else NOT_READY)


def describe(url: str, body: dict[str, object]) -> list[str]:
    """The lines ``status`` prints for a ``/readyz`` answer."""
    lines = [f"Clicktrail at {url}: {'ready' if body.get('ready') else 'NOT READY'}"]
    lines += [f"  redis: {body.get('redis', 'unknown')}"]
    lines += [f"  database: {body.get('database', 'unknown')}"]
    if "backlog" in body:
        lines.append(
            f"  stream: {body['backlog']} entries waiting, {body['pending']} being written, "
            f"oldest {body['lag_s']} s old"
        )
    if "workers" in body:
        workers = body["workers"]
        lines.append(
            f"  workers: {workers} alive"
            + ("" if workers else " (none: events wait in the stream until one starts)")
        )
    if "last_event_ms" in body:
        lines.append(f"  last event queued: {_when(body['last_event_ms'])}")
    reasons = body.get("reasons")
    if isinstance(reasons, list):
        lines += [f"  why not ready: {reason}" for reason in reasons]
    return lines


def _when(at_ms: object) -> str:
    if not isinstance(at_ms, int):
        return "never"
    moment = datetime.fromtimestamp(at_ms / 1000, UTC)
    ago_s = max(0, now_ms() - at_ms) // 1000
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC ({ago_s} s ago)"
