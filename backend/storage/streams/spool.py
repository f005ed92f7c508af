"""A local append-only file that keeps events while Redis cannot take them.

The pixel and the redirect must answer the browser even when Redis is down, and an answered
event must not be lost, so a failed stream write lands here (fsynced per group) and is replayed
to the stream once Redis is back. Records are length-prefixed; a torn final record from a crash
mid-write is ignored. Each process writes its own file; files of dead processes are claimed by
an atomic rename, so two processes never replay the same file. A replay that is cut short may
send some events twice: the worker's idempotent inserts absorb that.
"""

from __future__ import annotations

import os
import struct
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from backend.core.private_files import private_directory, private_opener

_LENGTH = struct.Struct(">I")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._pid = os.getpid()
        self.active = directory / f"spool-{self._pid}.bin"
        # append and claim run in worker threads: a group appended to a file that claim had
        # already renamed and replay had already read would be deleted with it, unsent.
        self._lock = threading.Lock()

    def append(self, payloads: list[bytes]) -> None:
        """Write and fsync one group of events (blocking; call it off the event loop)."""
        private_directory(self.directory)
        data = b"".join(_LENGTH.pack(len(p)) + p for p in payloads)
        with self._lock, open(self.active, "ab", opener=private_opener) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def claim(self) -> list[Path]:
        """Take over this process's file and any left by dead processes, ready to replay."""
        with self._lock:
            return self._claim()

    def _claim(self) -> list[Path]:
        if not self.directory.exists():
            return []
        claimed: list[Path] = []
        for path in sorted(self.directory.glob("*.bin")):
            kind, owner = path.stem.split("-")[:2]
            if not owner.isdigit():
                continue
            pid = int(owner)
            if pid == self._pid and kind == "claimed":
                claimed.append(path)  # left over from an interrupted replay of ours
                continue
            if pid != self._pid and _pid_alive(pid):
                continue  # a live process's own file
            target = self.directory / f"claimed-{self._pid}-{uuid.uuid4().hex}.bin"
            try:
                path.rename(target)
            except FileNotFoundError:
                continue  # another process claimed it first
            claimed.append(target)
        return claimed

    def size_bytes(self) -> int:
        if not self.directory.exists():
            return 0
        return sum(path.stat().st_size for path in self.directory.glob("*.bin"))


def read_records(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    offset = 0
    while offset + _LENGTH.size <= len(data):
        (length,) = _LENGTH.unpack_from(data, offset)
        start = offset + _LENGTH.size
        if start + length > len(data):
            return  # torn final record
        yield data[start : start + length]
        offset = start + length
