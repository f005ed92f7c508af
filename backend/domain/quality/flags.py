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
    # An unattributed sale whose buyer asked not to be tracked (GPC, or DNT when honoured):
    # counted apart, so a manager knows how many sales no click could be kept for.
    OPTED_OUT = "opted_out"
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


NOTES = frozenset({Flag.UNKNOWN_COUPON, Flag.OPTED_OUT})
"""Flags that say something about a conversion without doubting whom it credits."""


# Each flag in words a manager reads, and why it was set: the pages show these, never the codes
# alone (the CSV exports and the API keep the codes).
DESCRIBED: dict[str, tuple[str, str]] = {
    Flag.BOT_ABSURD_USER_AGENT: ("odd browser name", "no user agent, or one no browser sends"),
    Flag.BOT_NOT_BROWSER: ("not a browser", "a script, an HTTP library or a tool such as curl"),
    Flag.BOT_HEADLESS: ("automated browser", "a headless or remote-controlled browser"),
    Flag.BOT_CRAWLER: ("crawler", "a robot that names itself: a search engine, a monitor"),
    Flag.BOT_NO_ACCEPT_LANGUAGE: ("no language", "no Accept-Language, which every browser sends"),
    Flag.DUPLICATE: ("repeat click", "the same visitor clicked the same link seconds before"),
    Flag.RATE_LIMITED_LINK: ("too many clicks on the link", "over the link's per-minute limit"),
    Flag.RATE_LIMITED_PARTNER: (
        "too many clicks for the partner",
        "over the partner's per-minute limit",
    ),
    Flag.PREFIX_DUPLICATE: (
        "repeat click from one network",
        "the same network clicked the same link seconds before, whatever browser it claimed",
    ),
    Flag.PREFIX_RATE_LIMITED_LINK: (
        "many clicks from one network",
        "one network over the link's per-minute limit",
    ),
    Flag.PREFIX_RATE_LIMITED_PARTNER: (
        "many clicks from one network for the partner",
        "one network over the partner's per-minute limit",
    ),
    Flag.INVALID_CLICK_ID: ("unknown click id", "the click id the sale named is not one of ours"),
    Flag.CLICK_LINK_DELETED: ("link deleted", "the click's link has been deleted since"),
    Flag.CLICK_OF_OTHER_MERCHANT: (
        "another shop's click",
        "the click id belongs to a link of another merchant",
    ),
    Flag.CLICK_OUTSIDE_WINDOW: (
        "click too old",
        "the click came before the attribution window (cookie days)",
    ),
    Flag.UNKNOWN_COUPON: ("unknown coupon", "a code no partner of the shop holds"),
    Flag.OPTED_OUT: (
        "asked not to be tracked",
        "the buyer's browser sent Global Privacy Control: no click was kept for the sale",
    ),
    Flag.PARTNER_BANNED: ("partner banned", "a banned partner's sales earn nothing"),
    Flag.PARTNER_PAUSED: ("partner paused", "a paused partner's sales wait for a person"),
    Flag.LINK_PAUSED: ("link paused", "a paused link's sales wait for a person"),
    Flag.CAMPAIGN_PAUSED: ("campaign paused", "a paused campaign's sales wait for a person"),
    Flag.FLAT_COMMISSION_CURRENCY_MISMATCH: (
        "flat fee not paid",
        "the sale is in another currency than the campaign's flat fee",
    ),
    Flag.TOO_FAST: ("bought too fast", "the sale came within seconds of its click"),
    Flag.PREFIX_BURST: ("many orders from one network", "several sales from one network at once"),
    Flag.BOT_CLICK: ("a bot's click", "the click it credits was a bot's"),
    Flag.FLAGGED_CLICK: ("a flagged click", "the click it credits was a repeat or over a limit"),
    Flag.CLICK_MISSING: ("click not found", "the click id is valid but the click was never stored"),
    Flag.FOREIGN_CURRENCY: (
        "another currency",
        "the sale is not in the merchant's currency: its amount cannot be weighed",
    ),
    Flag.REVIEW: ("held for review", "a doubt above: it stays pending until a person decides"),
}


def described(flags: str) -> list[tuple[str, str, str]]:
    """(code, words, why) of each flag in a stored comma-separated ``flags`` value; an unknown
    code (an older release's) shows as itself."""
    return [(code, *DESCRIBED.get(code, (code, ""))) for code in flags.split(",") if code]
