"""What reports break down and filter by: the click dimensions.

Ids (partner, campaign, link) are columns of every table, the hourly stats included; the
text dimensions exist only on raw clicks and in the dimension rollup, which folds them.
"""

from __future__ import annotations

from dataclasses import dataclass


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
        Dimension("os", "Operating system", "os"),
        Dimension("country", "Country", "country"),
        *(Dimension(f"sub{n}", f"Sub-id {n}", f"sub{n}") for n in range(1, 6)),
        Dimension("utm_source", "UTM source", "utm_source"),
        Dimension("utm_medium", "UTM medium", "utm_medium"),
        Dimension("utm_campaign", "UTM campaign", "utm_campaign"),
        Dimension("utm_term", "UTM term", "utm_term"),
        Dimension("utm_content", "UTM content", "utm_content"),
        Dimension("flags", "Quality flags", "flags"),
    )
}
TEXT_DIMENSIONS = tuple(d for d in DIMENSIONS.values() if not d.is_id)
