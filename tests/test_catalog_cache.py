"""The catalog's read-through cache: misses are bounded apart from the entries, so a flood of
made-up link codes neither evicts the real links nor grows without limit (a pure unit test of
``TtlCache``: the loader counts what reaches the database)."""

from __future__ import annotations

from collections import Counter

from backend.storage.catalog import TtlCache


class Loader:
    """Names exist when they start with "link"; every call is counted."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def __call__(self, key: str) -> str | None:
        self.calls[key] += 1
        return key.upper() if key.startswith("link") else None


async def test_made_up_codes_do_not_push_out_the_real_links() -> None:
    cache: TtlCache[str, str] = TtlCache(ttl_s=60, miss_ttl_s=60, max_entries=10, max_misses=8)
    load = Loader()
    assert await cache.get("link-a", load) == "LINK-A"
    for number in range(1_000):
        assert await cache.get(f"nosuch{number}", load) is None
    assert await cache.get("link-a", load) == "LINK-A"
    assert load.calls["link-a"] == 1


async def test_misses_are_remembered_within_their_bound_only() -> None:
    cache: TtlCache[str, str] = TtlCache(ttl_s=60, miss_ttl_s=60, max_entries=10, max_misses=8)
    load = Loader()
    await cache.get("nosuch-first", load)
    await cache.get("nosuch-first", load)
    assert load.calls["nosuch-first"] == 1  # remembered
    for number in range(8):  # as many newer misses as the bound: the first is dropped
        await cache.get(f"nosuch{number}", load)
    await cache.get("nosuch-first", load)
    assert load.calls["nosuch-first"] == 2


async def test_entries_are_bounded_oldest_first_and_expired_misses_asked_again() -> None:
    cache: TtlCache[str, str] = TtlCache(ttl_s=60, miss_ttl_s=0, max_entries=3, max_misses=8)
    load = Loader()
    for name in ("link-1", "link-2", "link-3", "link-4"):
        await cache.get(name, load)
    await cache.get("link-4", load)
    await cache.get("link-2", load)
    await cache.get("link-1", load)  # the oldest, dropped when link-4 came
    assert load.calls == Counter({"link-1": 2, "link-2": 1, "link-3": 1, "link-4": 1})
    await cache.get("nosuch", load)
    await cache.get("nosuch", load)  # a miss lives miss_ttl_s: 0 here
    assert load.calls["nosuch"] == 2
