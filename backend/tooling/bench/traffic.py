"""Realistic synthetic visitors and tracking-link parameters, for the benchmark and the demo.

Uniform toy traffic (one user agent, one visitor) flatters the caches and the uniqueness check;
these pools give the mix a tracker sees: mostly browsers that send Accept-Language, some
crawlers and scripts that do not, publishers' pages, search and social referrers and direct
visits, and sub-ids and UTM tags the way affiliates fill them in. Addresses come from ranges
reserved for benchmarks and documentation (RFC 2544, RFC 3849), so nothing points at a real
network, and are spread over many networks, as a tracker's visitors are: the quality script
counts clicks per network prefix too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.81 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0",
)
BOTS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/131.0.0.0 Safari/537.36",
    "curl/8.5.0",
    "python-requests/2.32.3",
)
LANGUAGES = (
    "en-GB,en;q=0.9",
    "en-US,en;q=0.9",
    "de-DE,de;q=0.9,en;q=0.8",
    "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7",
    "nl-NL,nl;q=0.9,en;q=0.8",
    "ja-JP,ja;q=0.9,en-US;q=0.8",
    "es-ES,es;q=0.9",
)
SEARCH_AND_SOCIAL = (
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://duckduckgo.com/",
    "https://t.co/",
    "https://www.reddit.com/r/running/comments/",
    "https://l.facebook.com/",
)
PLACEMENTS = ("sidebar", "article-top", "article-bottom", "newsletter", "comparison-table")
BOT_SHARE = 0.05


@dataclass(frozen=True, slots=True)
class Browser:
    """One visitor's client, as the tracker sees it through a trusted proxy."""

    address: str
    user_agent: str
    accept_language: str | None  # crawlers and scripts rarely send one

    @property
    def is_bot(self) -> bool:
        return self.accept_language is None

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": self.user_agent, "X-Forwarded-For": self.address}
        if self.accept_language is not None:
            headers["Accept-Language"] = self.accept_language
        return headers


def _address(rng: random.Random) -> str:
    if rng.random() < 0.3:
        network, host = rng.randrange(1 << 32), rng.randrange(1, 0xFFFF)
        return f"2001:db8:{network >> 16:x}:{network & 0xFFFF:x}::{host:x}"
    network = rng.randrange(512)  # a /24 of 198.18.0.0/15
    return f"198.{18 + network // 256}.{network % 256}.{rng.randrange(1, 255)}"


def browsers(rng: random.Random, count: int) -> list[Browser]:
    """``count`` distinct visitors, about ``BOT_SHARE`` of them crawlers or scripts."""
    pool: list[Browser] = []
    for _ in range(count):
        if rng.random() < BOT_SHARE:
            pool.append(Browser(_address(rng), rng.choice(BOTS), None))
        else:
            pool.append(Browser(_address(rng), rng.choice(BROWSERS), rng.choice(LANGUAGES)))
    return pool


def referrer(rng: random.Random, publisher_site: str) -> str:
    """Mostly the publisher's own article, else search, social, or nothing (direct, apps)."""
    roll = rng.random()
    if roll < 0.55:
        section = rng.choice(("reviews", "guides", "deals"))
        return f"https://{publisher_site}/{section}/{rng.randrange(100, 999)}"
    if roll < 0.8:
        return rng.choice(SEARCH_AND_SOCIAL)
    return ""


def tracking_params(rng: random.Random, publisher: str) -> dict[str, str]:
    """Sub-ids and UTM tags as affiliates set them: some always, some now and then."""
    params = {
        "sub1": rng.choice(PLACEMENTS),
        "sub2": f"post-{rng.randrange(1, 400)}",
        "utm_source": publisher,
        "utm_medium": "affiliate",
        "utm_campaign": rng.choice(("spring-sale", "evergreen", "black-friday")),
    }
    if rng.random() < 0.3:
        params["sub3"] = rng.choice(("ios", "android", "web"))
    if rng.random() < 0.1:
        params["sub4"] = f"ab-{rng.choice('AB')}"
        params["sub5"] = f"u{rng.randrange(10**6)}"
    if rng.random() < 0.2:
        params["utm_term"] = rng.choice(("trail shoes", "matcha", "rain jacket", "tea set"))
        params["utm_content"] = rng.choice(("banner-300x250", "text-link", "button"))
    return params
