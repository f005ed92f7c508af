"""The commission a rule pays, written once for the worker (as it stores a conversion) and for a
person approving a conversion held for review (who pays by the rule that applies then).

A rule is a percent of the amount plus a flat fee: the partner's own override's, else its
group's for the campaign, else the campaign's (``backend.storage.catalog.choose_rule``). The
flat fee is in the merchant's currency, so a sale in another currency earns the percent only.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.money import commission_minor
from backend.storage.catalog import choose_rule, with_rules
from backend.storage.db.models import (
    Campaign,
    CommissionOverride,
    CommissionRule,
    Conversion,
    GroupRate,
    Merchant,
    Partner,
    PartnerStatus,
)


def by_rule(
    amount_minor: int, currency: str, merchant_currency: str, percent_bps: int, flat_minor: int
) -> int:
    """What a rule of ``percent_bps`` and ``flat_minor`` pays on a sale of ``amount_minor``."""
    flat = flat_minor if currency == merchant_currency else 0
    return commission_minor(amount_minor, percent_bps, flat)


async def rule_commission(
    session: AsyncSession, conversion: Conversion
) -> tuple[int, CommissionRule | None]:
    """What the rule that applies now (``choose_rule``: the partner's override of the
    campaign's rule, else the partner's group's rate, else the campaign's) pays on
    ``conversion``'s stored amount, and which rule that is: 0 and None when it is unattributed
    or its partner is banned. A renewal keeps what its renewal rule paid (``renewal_rule``
    says which)."""
    if conversion.campaign_id is None or conversion.partner_id is None:
        return 0, None
    if conversion.renewal_rule:
        return conversion.commission_minor, CommissionRule.RENEWAL
    row = (
        await session.execute(
            with_rules(
                select(Campaign, CommissionOverride, GroupRate, Merchant.currency, Partner.status)
                .join(Merchant, Merchant.id == Campaign.merchant_id)
                .join(Partner, Partner.id == conversion.partner_id)
            ).where(Campaign.id == conversion.campaign_id)
        )
    ).one_or_none()
    if row is None:
        return 0, None
    campaign, override, group_rate, merchant_currency, partner_status = row
    if partner_status == PartnerStatus.BANNED:
        return 0, None
    bps, flat, chosen = choose_rule(campaign, group_rate, override)
    return by_rule(
        conversion.amount_minor, conversion.currency, merchant_currency, bps, flat
    ), chosen


@dataclass(frozen=True, slots=True)
class RenewalRule:
    bps: int
    flat_minor: int
    label: str  # which rule priced the renewal, as the conversion shows it


def renewal_rule(
    mode: str,
    months: int | None,
    renewal_bps: int | None,
    renewal_flat_minor: int | None,
    base: tuple[int, int],
    bound_ms: int,
    at_ms: int,
) -> RenewalRule | None:
    """The rule a campaign pays a renewal at ``at_ms`` of a customer bound at ``bound_ms``:
    ``mode`` "lifetime", or "months" while within ``months`` calendar months of the binding;
    the renewal rate when set, else ``base`` (the partner's or the campaign's bps and flat
    fee). None: renewals are not paid (any more)."""
    if mode == "months":
        if not months or at_ms >= add_months_ms(bound_ms, months):
            return None
        period = f"{months} months"
    elif mode == "lifetime":
        period = "lifetime"
    else:
        return None
    if renewal_bps is None:
        return RenewalRule(base[0], base[1], f"renewal ({period}) at the usual rate")
    return RenewalRule(renewal_bps, renewal_flat_minor or 0, f"renewal ({period}) at its own rate")


def add_months_ms(at_ms: int, months: int) -> int:
    """``at_ms`` plus ``months`` calendar months (the day clamped to the month's last)."""
    start = datetime.fromtimestamp(at_ms / 1000, UTC)
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return int(start.replace(year=year, month=month, day=day).timestamp() * 1000)
