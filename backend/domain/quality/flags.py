"""The closed set of reasons stored, comma-separated, in ``clicks.flags`` and ``conversions.flags``.

One set shared by the worker that writes them, the reports that count them and the
auto-approval job that skips conversions held for ``review``.
"""

from __future__ import annotations

from enum import StrEnum


class Flag(StrEnum):
    # A bot's click (``clicks.is_bot``): stored, never billed.
    BOT_ABSURD_USER_AGENT = "bot:absurd_user_agent"
    BOT_NOT_BROWSER = "bot:not_browser"
    BOT_HEADLESS = "bot:headless"
    BOT_CRAWLER = "bot:crawler"
    BOT_NO_ACCEPT_LANGUAGE = "bot:no_accept_language"
    # A human's click that is not billed.
    DUPLICATE = "duplicate"
    RATE_LIMITED_LINK = "rate_limited:link"
    RATE_LIMITED_PARTNER = "rate_limited:partner"
    # The same, counted per network prefix: one address rotating user agents, say.
    PREFIX_DUPLICATE = "duplicate:prefix"
    PREFIX_RATE_LIMITED_LINK = "rate_limited:prefix_link"
    PREFIX_RATE_LIMITED_PARTNER = "rate_limited:prefix_partner"
    # Conversions: attribution that failed (the conversion is stored unattributed).
    INVALID_CLICK_ID = "invalid_click_id"
    CLICK_LINK_DELETED = "click_link_deleted"
    CLICK_OF_OTHER_MERCHANT = "click_of_other_merchant"
    CLICK_OUTSIDE_WINDOW = "click_outside_window"
    # A coupon code that is none of the merchant's partners' (the shop's own promotion, a typo,
    # a deleted coupon): noted, and it holds nothing for review (``NOTES``).
    UNKNOWN_COUPON = "unknown_coupon"
    # Conversions: commission.
    PARTNER_BANNED = "partner_banned"  # a banned partner's conversions earn nothing
    PARTNER_PAUSED = "partner_paused"  # a paused partner's conversions wait for a person
    LINK_PAUSED = "link_paused"  # likewise a paused link's
    CAMPAIGN_PAUSED = "campaign_paused"  # and a paused campaign's
    FLAT_COMMISSION_CURRENCY_MISMATCH = "flat_commission_currency_mismatch"
    # Conversions: doubts about the sale or the click it credits.
    TOO_FAST = "too_fast"
    PREFIX_BURST = "prefix_burst"
    BOT_CLICK = "bot_click"
    FLAGGED_CLICK = "flagged_click"
    CLICK_MISSING = "click_missing"
    # A sale in a currency other than the merchant's: its amount cannot be weighed against the
    # merchant's rules (nor an auto-approval limit), so a person looks, attributed or not.
    FOREIGN_CURRENCY = "foreign_currency"
    # An attributed conversion with any flag: stays pending until a person decides.
    REVIEW = "review"


NOTES = frozenset({Flag.UNKNOWN_COUPON})
"""Flags that say something about a conversion without doubting whom it credits."""
