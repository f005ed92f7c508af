"""The visitor's country, from the address at the edge, before the address is dropped: an
offline database that ships with the package (``geoip2fast``: country ranges of IPv4 and IPv6
from the regional registries' public data, looked up in microseconds), so no lookup leaves the
machine and no address is kept. Private and unknown addresses have no country ("").

A MaxMind database (``GEOIP_DATABASE``, a GeoLite2 or GeoIP2 ``.mmdb``) may be the source
instead, read with ``maxminddb`` in this process just the same.

A lookup costs about 8 µs a click, so ``Countries.of_network`` remembers the answer per
network prefix (the /24 or /48 that events keep of the address): a country rarely changes
inside one, and the answer then depends on nothing the events do not keep."""

from __future__ import annotations

import ipaddress
from functools import cache, lru_cache
from pathlib import Path

import maxminddb
from geoip2fast import GeoIP2Fast

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
UNKNOWN = "--"  # geoip2fast's code for an address it has no country for
NETWORKS_REMEMBERED = 16_384  # prefixes whose country is kept: a few MB at most


@cache
def _database() -> GeoIP2Fast:
    # The file with IPv6 ranges holds the IPv4 ones too (about 70 ms to load, once a process).
    return GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz", verbose=False)


def country_of(address: Address | None) -> str:
    """ISO 3166-1 alpha-2 code of ``address``'s country, or "" (none, private, unknown)."""
    if address is None or not address.is_global:
        return ""
    code = str(_database().lookup(str(address)).country_code)
    return "" if code == UNKNOWN or len(code) != 2 else code


class Countries:
    """The country source of a process: geoip2fast's data, or the MaxMind ``database``."""

    def __init__(self, database: Path | None = None) -> None:
        self._reader = maxminddb.open_database(database) if database else None
        self.of_network = lru_cache(maxsize=NETWORKS_REMEMBERED)(self.of)

    def close(self) -> None:
        """Let go of the MaxMind database file (nothing to do for geoip2fast's)."""
        if self._reader is not None:
            self._reader.close()

    def of(self, address: Address) -> str:
        """``address``'s ISO 3166-1 alpha-2 code, or "" (private, unknown)."""
        if self._reader is None:
            return country_of(address)
        if not address.is_global:
            return ""
        record = self._reader.get(address)
        if not isinstance(record, dict):
            return ""
        # The country where the address is used, else the one it is registered to.
        for field in ("country", "registered_country"):
            place = record.get(field)
            code = place.get("iso_code") if isinstance(place, dict) else None
            if isinstance(code, str) and len(code) == 2:
                return code
        return ""


GEOIP2FAST = Countries()  # the default source, for callers without settings
