"""Each fault test gets its own deployment: Redis, web and workers as real processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faults.harness import Stack
from tests.faults.storage import SmallDisk, database_on_small_disk
from tests.faults.supervised import RunStack
from tests.support import SECRET


@pytest.fixture
async def stack(tmp_path: Path, database_url: str) -> AsyncIterator[Stack]:
    deployment = Stack(tmp_path, database_url, SECRET)
    yield deployment
    await deployment.close()


@pytest.fixture
async def small_disk_stack(
    tmp_path: Path, database_url: str
) -> AsyncIterator[tuple[Stack, SmallDisk]]:
    """A deployment whose database lives on a small disk the test can fill."""
    async with database_on_small_disk(database_url, tmp_path) as (url, disk):
        deployment = Stack(tmp_path, url, SECRET)
        try:
            yield deployment, disk
        finally:
            await deployment.close()


@pytest.fixture
async def run_stack(tmp_path: Path, database_url: str) -> AsyncIterator[RunStack]:
    """A deployment started by ``clicktrail run`` (its supervisor, embedded Redis and all)."""
    deployment = RunStack(tmp_path, database_url, SECRET)
    yield deployment
    await deployment.close()
