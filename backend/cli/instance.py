"""Where a running ``clicktrail run`` listens. It leaves its URL and process id in
``var/instance.json`` while it runs, so ``clicktrail status`` and ``clicktrail demo`` started in
the same directory find it without being told the port."""

from __future__ import annotations

import json
import os
from pathlib import Path

from backend.core.private_files import private_directory, private_opener

INSTANCE_FILE = "instance.json"


def announce(var_dir: Path, url: str) -> None:
    """Record that this process serves ``url`` (replacing a record a dead run left)."""
    path = private_directory(var_dir) / INSTANCE_FILE
    path.unlink(missing_ok=True)
    with open(path, "x", opener=private_opener) as file:
        json.dump({"url": url, "pid": os.getpid()}, file)


def withdraw(var_dir: Path) -> None:
    """Remove this process's record (another process's stays)."""
    path = var_dir / INSTANCE_FILE
    if _read(path).get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def running_url(var_dir: Path) -> str | None:
    """The URL of the ``clicktrail run`` recorded under ``var_dir``, if its process is alive."""
    record = _read(var_dir / INSTANCE_FILE)
    url, pid = record.get("url"), record.get("pid")
    if not isinstance(url, str) or not isinstance(pid, int) or not _alive(pid):
        return None
    return url


def _read(path: Path) -> dict[str, object]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True
