"""The edge's remembered addresses (``Clients``) and countries (``network_country``) give the
answers the uncached functions give, for trusted and untrusted peers, IPv4 and IPv6."""

from __future__ import annotations

import ipaddress

import pytest

from backend.core.settings import LOOPBACK
from backend.domain.geo import GEOIP2FAST, country_of
from backend.domain.visitor import (
    MAX_REMEMBERED_FORWARDED,
    Client,
    Clients,
    client_address,
    describe_visitor,
    network_prefix,
)

REQUESTS = [
    ("203.0.113.9", None),
    ("127.0.0.1", None),
    ("127.0.0.1", b"198.51.100.7"),
    ("127.0.0.1", b"198.51.100.7, 127.0.0.1"),
    ("198.51.100.7", b"203.0.113.1"),  # not a trusted proxy: its header is not believed
    ("127.0.0.1", b"not-an-address"),
    ("::1", b"2001:db8:1:2:3::4"),
    ("::ffff:198.51.100.7", None),
    (None, None),
]


@pytest.mark.parametrize(("peer", "forwarded"), REQUESTS)
def test_a_remembered_client_is_the_address_worked_out_afresh(
    peer: str | None, forwarded: bytes | None
) -> None:
    clients = Clients(LOOPBACK, size=2)
    scope = {"client": (peer, 50000) if peer else None}
    address = client_address(peer, forwarded.decode() if forwarded else None, LOOPBACK)
    for _ in range(2):  # the second answer comes from memory
        client = clients.of_request(scope, forwarded)  # type: ignore[arg-type]
        assert client.text == str(address)
        assert client.prefix == network_prefix(address)


def test_a_long_forwarded_header_is_worked_out_too() -> None:
    hops = b", ".join([b"10.0.0.1"] * MAX_REMEMBERED_FORWARDED) + b", 198.51.100.7"
    client = Clients(LOOPBACK).of_request({"client": ("127.0.0.1", 1)}, hops)  # type: ignore[arg-type]
    assert client.prefix == "198.51.100.0/24"


@pytest.mark.parametrize(
    "text", ["8.8.8.8", "81.2.69.142", "2001:4860:4860::8888", "2a02:2e0::1", "10.1.2.3", "::1"]
)
def test_the_country_of_a_prefix_is_that_of_its_addresses(text: str) -> None:
    address = ipaddress.ip_address(text)
    network = Client.of(address).network
    assert network is not None
    assert GEOIP2FAST.of_network(network) == country_of(address)
    visitor = describe_visitor(address, "agent", True, b"s" * 32, locate=True)
    assert visitor.country == country_of(address)
