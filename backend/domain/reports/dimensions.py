"""What reports break down and filter by: the click dimensions, and a viewer's filters.

Ids (partner, campaign, link) are columns of every table, the hourly stats included; the
text dimensions exist only on raw clicks and in the dimension rollup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

MAX_FILTER_LENGTH = 2048


@dataclass(frozen=True, slots=True)
class Dimension:
    name: str
    label: str
    column: str
    is_id: bool = False


DIMENSIONS: dict[str, Dimension] = {
    dimension.name: dimension
    for dimension in (
        Dimension("partner", "Partner", "partner_id", is_id=True),
        Dimension("campaign", "Campaign", "campaign_id", is_id=True),
        Dimension("link", "Link", "link_id", is_id=True),
        Dimension("referrer", "Referrer domain", "referrer_host"),
        Dimension("landing", "Landing page", "landing_url"),
        Dimension("device", "Device class", "device_class"),
        Dimension("browser", "Browser", "browser"),
        *(Dimension(f"sub{n}", f"Sub-id {n}", f"sub{n}") for n in range(1, 6)),
        Dimension("utm_source", "UTM source", "utm_source"),
        Dimension("utm_medium", "UTM medium", "utm_medium"),
        Dimension("flags", "Quality flags", "flags"),
    )
}
TEXT_DIMENSIONS = tuple(d for d in DIMENSIONS.values() if not d.is_id)


class FilterError(ValueError):
    """A filter that cannot be applied (the page answers 400 with it)."""


@dataclass(frozen=True, slots=True)
class Filters:
    """Conditions that all apply at once: ids by dimension name, text values by name."""

    ids: dict[str, int] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)

    def id(self, name: str) -> int | None:
        return self.ids.get(name)

    def query(self) -> dict[str, str]:
        return {**{k: str(v) for k, v in self.ids.items()}, **self.texts}

    def described(self) -> list[tuple[str, str, str]]:
        """(name, label, value) of each filter, for the chips above a table."""
        return [
            (name, DIMENSIONS[name].label, str(value))
            for name, value in {**self.ids, **self.texts}.items()
        ]


def parse_filters(query: Mapping[str, str]) -> Filters:
    ids: dict[str, int] = {}
    texts: dict[str, str] = {}
    for name, dimension in DIMENSIONS.items():
        value = query.get(name)
        if value is None:
            continue
        if dimension.is_id:
            if not value.isdigit() or len(value) > 9:
                raise FilterError(f"{name} must be a numeric id")
            ids[name] = int(value)
        else:
            if len(value) > MAX_FILTER_LENGTH:
                raise FilterError(f"{name} is longer than {MAX_FILTER_LENGTH} characters")
            texts[name] = value
    return Filters(ids, texts)
