"""User-agent classification: bot or not, device class and browser family.

Deliberately small: a crawler/automation pattern and a few family tests, cached per distinct
user agent (traffic repeats a small set of them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_BOT = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|scrape|fetch|preview|monitor|checker|archiver|"
    r"headless|phantomjs|selenium|puppeteer|playwright|lighthouse|"
    r"curl/|wget/|python-|python/|httpx|aiohttp|okhttp|go-http-client|java/|libwww|"
    r"facebookexternalhit|embedly|whatsapp|bingpreview|mediapartners|adsbot",
    re.IGNORECASE,
)
_TABLET = re.compile(r"ipad|tablet|kindle|silk|playbook|(android(?!.*mobile))", re.IGNORECASE)
_MOBILE = re.compile(r"mobi|iphone|ipod|android.*mobile|windows phone|blackberry", re.IGNORECASE)
_BROWSERS = (
    ("edge", re.compile(r"edg(e|a|ios)?/", re.IGNORECASE)),
    ("opera", re.compile(r"opr/|opera", re.IGNORECASE)),
    ("samsung", re.compile(r"samsungbrowser/", re.IGNORECASE)),
    ("firefox", re.compile(r"firefox/|fxios/", re.IGNORECASE)),
    ("chrome", re.compile(r"chrome/|crios/|chromium/", re.IGNORECASE)),
    ("safari", re.compile(r"safari/", re.IGNORECASE)),
)


@dataclass(frozen=True, slots=True)
class UserAgentInfo:
    is_bot: bool
    device_class: str
    browser: str


@lru_cache(maxsize=4096)
def classify(user_agent: str, accept_language: bool) -> UserAgentInfo:
    """A request with no user agent, or none of the headers every browser sends, is a bot."""
    is_bot = len(user_agent) < 10 or not accept_language or bool(_BOT.search(user_agent))
    if is_bot:
        device = "bot"
    elif _TABLET.search(user_agent):
        device = "tablet"
    elif _MOBILE.search(user_agent):
        device = "mobile"
    else:
        device = "desktop"
    browser = next((name for name, pattern in _BROWSERS if pattern.search(user_agent)), "other")
    return UserAgentInfo(is_bot=is_bot, device_class=device, browser=browser)
