"""Who is asking: everything a report or API query may see follows from this one object.

Queries take a ``Viewer`` and call ``restrict`` on their statement, so partner isolation is
written once instead of in every query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select

S = TypeVar("S", bound=Select[*tuple[Any, ...]])


@dataclass(frozen=True, slots=True)
class Viewer:
    """An admin (``partner_id`` None) or one partner; ``actor`` names them in audit trails."""

    partner_id: int | None
    actor: str = "system"

    @property
    def is_admin(self) -> bool:
        return self.partner_id is None

    def restrict(self, statement: S, partner_column: Any) -> S:
        if self.partner_id is None:
            return statement
        return statement.where(partner_column == self.partner_id)


ADMIN = Viewer(partner_id=None)
