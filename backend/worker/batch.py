"""What the steps build and the writer writes: one batch's rows per table, each with its rollup
delta.

Clicks and impressions, nearly every event, become plain tuples in their table's column order
(``CLICK_COLUMNS``, ``IMPRESSION_COLUMNS``), which the SQLite driver binds as they are; they
arrive as their rows already (the edge stamps them), and only Redis's verdict is added. The few
conversions stay dictionaries that the pricing steps fill in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backend.domain.events import ClickEvent, ImpressionEvent, NetworkEvent
from backend.storage.rollups.hourly import Delta

Row = dict[str, Any]
Values = tuple[Any, ...]  # a row's values in its table's column order

# Clicks and impressions arrive as their rows (the edge stamps them); the key is the first column.
# A click's network prefix follows its columns: it travels for the quality script only.
CLICK_COLUMNS: tuple[str, ...] = ClickEvent.__struct_fields__[:-1]
IMPRESSION_COLUMNS: tuple[str, ...] = ImpressionEvent.__struct_fields__


@dataclass(slots=True)
class Prepared:
    """One batch, ready to write: rows per table and each row's rollup delta by its id."""

    clicks: list[Values] = field(default_factory=list)  # in CLICK_COLUMNS order
    impressions: list[Values] = field(default_factory=list)  # in IMPRESSION_COLUMNS order
    conversions: list[Row] = field(default_factory=list)
    rejected: list[Row] = field(default_factory=list)
    deltas: dict[str, Delta] = field(default_factory=dict)
    # The status a conversion source's postback reports, by its conversion's event id.
    network_statuses: dict[str, str] = field(default_factory=dict)
    # A store's webhook event (``NetworkEvent.store_event``), by its conversion's event id.
    store_events: dict[str, NetworkEvent] = field(default_factory=dict)
