"""The visitor's country, from the address at the edge, before the address is dropped: an
offline database that ships with the package (``geoip2fast``: country ranges of IPv4 and IPv6
from the regional registries' public data, looked up in microseconds), so no lookup leaves the
machine and no address is kept. Private and unknown addresses have no country ("").

A lookup costs about 8 µs a click, so ``network_country`` remembers the answer per network
prefix (the /24 or /48 that events keep of the address): a country rarely changes inside one,
and the answer then depends on nothing the events do not keep."""

from __future__ import annotations

import ipaddress
from functools import cache, lru_cache

from geoip2fast import GeoIP2Fast

UNKNOWN = "--"  # geoip2fast's code for an address it has no country for
NETWORKS_REMEMBERED = 16_384  # prefixes whose country is kept: a few MB at most


@cache
def _database() -> GeoIP2Fast:
    # The file with IPv6 ranges holds the IPv4 ones too (about 70 ms to load, once a process).
    return GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz", verbose=False)


def country_of(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> str:
    """ISO 3166-1 alpha-2 code of ``address``'s country, or "" (none, private, unknown)."""
    if address is None or not address.is_global:
        return ""
    code = str(_database().lookup(str(address)).country_code)
    return "" if code == UNKNOWN or len(code) != 2 else code


@lru_cache(maxsize=NETWORKS_REMEMBERED)
def network_country(network: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """``country_of`` the first address of a network prefix: the country of every address in
    it, looked up once while the prefix stays among the recently seen."""
    return country_of(network)
