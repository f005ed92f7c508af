"""Files only the deployment's user may read. The var directory holds the database, Redis's
append-only file (live session ids, postback secrets), the spool and the secret key: the
commands start under a umask that keeps all they and their children create to their owner, and
the code that creates such files gives them owner-only modes itself (it may run under another
umask: a library's caller, a test)."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_UMASK = 0o077
DIRECTORY_MODE, FILE_MODE = 0o700, 0o600


def private_directory(path: Path) -> Path:
    """``path``, created owner-only if it is missing (an existing one is left as it is)."""
    path.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    return path


def private_opener(path: str, flags: int) -> int:
    """An ``opener`` for ``open``: a file it creates is owner-only."""
    return os.open(path, flags | os.O_CLOEXEC, FILE_MODE)
