"""Pure functions: money, ids, client addresses, settings, stream entries; property tests for
general rules."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.core.ids import ClickIdSigner, click_id_floor, new_event_id
from backend.core.money import (
    MINOR_DIGITS,
    MoneyError,
    commission_minor,
    format_minor,
    parse_amount,
)
from backend.core.settings import LOOPBACK, SettingsError, load_settings
from backend.domain.events import RejectedEvent, RejectReason, Source, encode_event
from backend.domain.visitor import client_address, network_prefix
from backend.storage.streams.entries import encode_entry, entry_size, split_entry
from backend.worker.batch import Prepared
from backend.worker.pipeline import Inquiry
from backend.worker.steps.attribute import CreditedClick
from backend.worker.steps.validate import Validated

currencies = st.sampled_from(sorted(MINOR_DIGITS))


@given(currencies, st.integers(min_value=0, max_value=10**12))
def test_amounts_round_trip_through_minor_units(currency: str, minor: int) -> None:
    assert parse_amount(format_minor(minor, currency), currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [("49.90", "EUR", 4990), ("49.9", "EUR", 4990), ("49", "EUR", 4900), ("1500", "JPY", 1500),
     ("1500.00", "JPY", 1500), ("1.234", "KWD", 1234), ("0", "USD", 0), ("10.500", "EUR", 1050)],
)  # fmt: skip
def test_parse_amount(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "reason"),
    [("-1", "negative_amount"), ("1e3", "invalid_amount"), ("0x10", "invalid_amount"),
     ("", "invalid_amount"), ("1.5.2", "invalid_amount"), ("NaN", "invalid_amount"),
     ("10.001", "invalid_amount")],
)  # fmt: skip
def test_parse_amount_refuses(text: str, reason: str) -> None:
    with pytest.raises(MoneyError) as error:
        parse_amount(text, "EUR")
    assert error.value.reason == reason


@given(
    st.integers(min_value=0, max_value=10**13),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=10**6),
)
def test_commission_is_half_even_rounded_share_plus_flat(amount: int, bps: int, flat: int) -> None:
    result = commission_minor(amount, bps, flat)
    exact = Decimal(amount) * bps / 10_000
    assert result == int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)) + flat
    assert abs(Decimal(result - flat) - exact) <= Decimal("0.5")
    assert flat <= result <= amount + flat


def test_commission_rounds_half_to_even() -> None:
    assert commission_minor(5, 1000, 0) == 0  # 0.5 -> 0
    assert commission_minor(15, 1000, 0) == 2  # 1.5 -> 2
    assert commission_minor(25, 1000, 0) == 2  # 2.5 -> 2


@given(st.integers(min_value=1, max_value=2**32 - 1), st.integers(0, 2**47))
def test_click_ids_carry_link_and_time(link_id: int, at_ms: int) -> None:
    signer = ClickIdSigner("k" * 40)
    ref = signer.verify(signer.issue(link_id, at_ms))
    assert ref is not None
    assert (ref.link_id, ref.clicked_ms) == (link_id, at_ms)


def test_forged_or_altered_click_ids_are_refused() -> None:
    signer = ClickIdSigner("k" * 40)
    click_id = signer.issue(7, 1_700_000_000_000)
    assert ClickIdSigner("other" * 8).verify(click_id) is None
    for position in (0, 10, 30, len(click_id) - 1):
        swapped = "A" if click_id[position] != "A" else "B"
        assert signer.verify(click_id[:position] + swapped + click_id[position + 1 :]) is None
    assert signer.verify(click_id[:-1]) is None
    assert signer.verify("") is None
    assert signer.verify("!" * len(click_id)) is None


@given(st.lists(st.integers(0, 2**47), min_size=2, max_size=20))
def test_ids_sort_like_their_time(times: list[int]) -> None:
    signer = ClickIdSigner("k" * 40)
    ordered = sorted(times)
    clicks = [signer.issue(1, t) for t in ordered]
    events = [new_event_id(t) for t in ordered]
    for earlier, later, t_earlier, t_later in zip(
        clicks, clicks[1:], ordered, ordered[1:], strict=False
    ):
        if t_earlier < t_later:
            assert earlier < later
            assert click_id_floor(t_later) <= later
            assert click_id_floor(t_later) > earlier
    assert [e[:12] for e in events] == sorted(e[:12] for e in events)


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", None, "203.0.113.9"),
        ("127.0.0.1", "198.51.100.7", "198.51.100.7"),
        ("127.0.0.1", "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # left part is client-supplied
        ("203.0.113.9", "198.51.100.7", "203.0.113.9"),  # untrusted peer: header ignored
        ("127.0.0.1", "garbage, 198.51.100.7", "198.51.100.7"),
        ("127.0.0.1", "127.0.0.2", "127.0.0.2"),
        (None, "198.51.100.7", "198.51.100.7"),  # unix socket: the peer is a local proxy
        ("testclient", None, "None"),
    ],
)
def test_client_address_believes_forwarding_only_from_trusted_proxies(
    peer: str | None, forwarded: str | None, expected: str
) -> None:
    assert str(client_address(peer, forwarded, LOOPBACK)) == expected


def test_network_prefix_keeps_no_host_part() -> None:
    assert network_prefix(ipaddress.ip_address("198.51.100.7")) == "198.51.100.0/24"
    assert network_prefix(ipaddress.ip_address("2001:db8:1:2:3::4")) == "2001:db8:1::/48"
    assert network_prefix(ipaddress.ip_address("::ffff:198.51.100.7")) == "198.51.100.0/24"
    assert network_prefix(None) == ""


def test_settings_name_every_variable_at_fault(tmp_path: object) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(
            {
                "CLICKTRAIL_BATCH_SIZE": "many",
                "CLICKTRAIL_TRUSTED_PROXIES": "10.0.0.0/8, nonsense",
                "CLICKTRAIL_DATABASE_URL": "mysql://x",
                "CLICKTRAIL_ENV": "production",
                "CLICKTRAIL_HONOR_GPC": "maybe",
                "CLICKTRAIL_WORKER_CPU": "4096",
            }
        )
    message = str(error.value)
    for variable in (
        "BATCH_SIZE",
        "TRUSTED_PROXIES",
        "DATABASE_URL",
        "SECRET_KEY",
        "HONOR_GPC",
        "WORKER_CPU",
    ):
        assert f"CLICKTRAIL_{variable}" in message


def test_development_secret_is_generated_once(tmp_path: pytest.TempPathFactory) -> None:
    env = {"CLICKTRAIL_VAR_DIR": str(tmp_path)}
    first, second = load_settings(env), load_settings(env)
    assert len(first.secret_key) >= 32
    assert first.secret_key == second.secret_key
    assert first.database_url.endswith("/clicktrail.db")


@given(st.integers(min_value=0, max_value=70_000))
def test_an_entry_tells_how_many_events_it_holds_from_its_header(count: int) -> None:
    event = encode_event(
        RejectedEvent("e1", 1, Source.JS, RejectReason.INVALID_EVENT, "detail", "payload")
    )
    entry = encode_entry([event] * count)
    assert entry_size(entry) == count
    if count <= 20:
        assert split_entry(entry) == [event] * count


def test_an_entry_of_garbage_counts_as_one() -> None:
    assert entry_size(b"\xc1 not msgpack") == entry_size(b"") == 1


async def test_a_batch_dropped_as_its_answers_fail_leaves_nothing_unretrieved() -> None:
    """The worker drops a batch whose questions to Redis have just failed, before the future
    gathering the answers has heard (a Redis outage mid-pipeline): no error, nothing to log."""
    loop = asyncio.get_running_loop()
    bits: asyncio.Future[tuple[list[int], list[int], list[int]]] = loop.create_future()
    clicks: asyncio.Future[dict[str, CreditedClick]] = loop.create_future()
    orders: asyncio.Future[dict[tuple[int, str], str]] = loop.create_future()
    orders.set_result({})
    answers = asyncio.gather(bits, clicks, orders)
    bits.set_exception(ConnectionError("Redis went away"))
    clicks.set_exception(ConnectionError("Redis went away"))
    unhandled: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: unhandled.append(context))

    Inquiry(Prepared(), Validated(), [], set(), answers).cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)

    assert answers.done()
    del answers, bits, clicks, orders
    gc.collect()
    assert unhandled == []
