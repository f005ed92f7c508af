"""A viewer's filters over the click dimensions (``backend.storage.rollups.dimensions``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from backend.storage.rollups.dimensions import DIMENSIONS

MAX_FILTER_LENGTH = 2048


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
