"""User agents: bot or browser, device class, browser and operating system.

A request is a bot's when its user agent says so or when it lacks what every browser sends,
checked from the cheapest test to the dearest (the first user-agent reason is kept):
- ``bot:absurd_user_agent``: none at all, one of 500 characters or more (the edge cuts at 512),
  or a ``Mozilla/`` agent of under 30 (browsers send 60 to 300);
- ``bot:not_browser``: no ``Mozilla/`` first, which browsers have sent since the 1990s, and no
  sign of a browser that never did (old phone, TV and text browsers, social apps' in-app
  browsers: ``agent_names.BROWSERS_WITHOUT_MOZILLA``): curl, scripts, HTTP libraries;
- ``bot:headless``: an automated browser (HeadlessChrome, PhantomJS, Selenium, WebDriver,
  Puppeteer, Playwright, Splash);
- ``bot:crawler``: a robot that names itself, by crawlerdetect's maintained list, by the names
  of robots that append theirs to a browser's agent (monitors, consent scanners, auditors:
  ``agent_names.BROWSER_LIKE_ROBOTS``) or by the crawler conventions no browser follows (a URL
  or contact address, ``compatible;`` outside old Internet Explorer, Konqueror and phone
  browsers); browsers' names that robots' names match are removed first
  (``agent_names.NOT_ROBOTS``: Cốc Cốc's ``CocCocBrowser`` is not the ``coccoc`` crawler);
- ``bot:no_accept_language``: no Accept-Language header (``Visitor.accept_language``).

crawlerdetect's own matcher tries its ~1,500 patterns one after the other at every position of
the agent: about 1 ms for a browser's agent here. ``is_listed_crawler`` gives the same answers
(tests/test_bots_corpus.py) from the same lists in about 15 µs: the plain patterns compiled as
one trie, the anchored ones tried at the start only, all on the lower-cased agent; the other
word lists are tries too. ``classify`` also caches its verdicts per distinct (user agent,
Accept-Language), which traffic repeats.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeAlias

from crawlerdetect.providers.crawlers import data as _CRAWLER_PATTERNS
from crawlerdetect.providers.exclusions import data as _EXCLUSION_PATTERNS
from ua_parser import parse

from backend.domain.quality.agent_names import (
    BROWSER_LIKE_ROBOTS,
    BROWSERS_WITHOUT_MOZILLA,
    NOT_ROBOTS,
)
from backend.domain.quality.flags import Flag

MIN_LENGTH = 30
MAX_LENGTH = 500
CACHE_SIZE = 32_768
FAMILY_LENGTH = 32  # the columns' width

# All patterns here are matched against the lower-cased agent.
_SELF_DECLARED = re.compile(
    r"https?://|www\.|[\w.+-]@[\w-]+\.[a-z]{2,}"
    r"|compatible(?!.*(?:msie|trident|konqueror|netfront|teleca|polaris|brew|midp|symbian))"
)
_TABLET = re.compile(r"ipad|tablet|kindle|silk|playbook|(android(?!.*mobile))")
_MOBILE = re.compile(
    r"mobi|iphone|ipod|android.*mobile|windows phone|blackberry|windows ce|midp|opera mini|symbian"
    r"|series ?[46]0|nokia|up\.browser|up\.link|netfront|obigo|teleca|polaris|brew|ucweb"
)

_Trie: TypeAlias = dict[str, "_Trie"]
_ESCAPED = re.compile(r"\\([^0-9A-Za-z])")
_SPECIAL = frozenset("\\^$.*+?()[]{}|")
_UPPER_OR_ESCAPE = re.compile(r"\\.|[A-Z]+")
# A repeated class in front may match nothing, so it never decides whether a search matches.
_LEADING_REPEAT = re.compile(r"^\[[^\]]*\]\*")


def _lowered(pattern: str) -> str:
    """``pattern`` for lower-cased text: letters lowered, escapes (``\\S``, ``\\D``) kept."""
    return _UPPER_OR_ESCAPE.sub(lambda m: m[0] if m[0][0] == "\\" else m[0].lower(), pattern)


def _words(pattern: str) -> list[str] | None:
    """The plain strings a search for ``pattern`` looks for, if that is all it does."""
    pattern = _LEADING_REPEAT.sub("", pattern)
    if pattern.startswith("(") and pattern.endswith(")"):
        pattern = pattern[1:-1]
    words = []
    for option in pattern.split("|"):
        if _SPECIAL.intersection(_ESCAPED.sub("", option)):
            return None
        words.append(_ESCAPED.sub(r"\1", option).lower())
    return words


def _trie_pattern(words: Iterable[str]) -> str:
    """A regular expression for any of ``words`` that shares their prefixes, as a trie does."""
    root: _Trie = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}
    return _branches(root)


def _branches(node: _Trie) -> str:
    if "" in node:  # a word ends here; a search needs nothing longer
        return ""
    options = [re.escape(char) + _branches(child) for char, child in sorted(node.items())]
    return options[0] if len(options) == 1 else f"(?:{'|'.join(options)})"


def _compile_crawler_list() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """crawlerdetect's patterns split three ways: plain words (one trie), patterns anchored at
    the start (tried at one position only) and the few others."""
    words: list[str] = []
    anchored: list[str] = []
    others: list[str] = []
    for pattern in _CRAWLER_PATTERNS:
        plain = _words(pattern)
        if plain is not None:
            words += plain
        elif pattern.startswith("^") and "|" not in pattern:
            anchored.append(_lowered(pattern))
        else:
            others.append(_lowered(pattern))
    return (
        re.compile(_trie_pattern(words)),
        re.compile("|".join(anchored)),
        re.compile("|".join(others)),
    )


_LISTED_WORDS, _LISTED_PREFIXES, _LISTED_PATTERNS = _compile_crawler_list()
_HEADLESS = re.compile(
    _trie_pattern(
        ("headless", "phantomjs", "slimerjs", "selenium", "webdriver", "puppeteer", "playwright")
    )
    + "| splash "  # Scrapy's rendering service
)
_BROWSER_LIKE_ROBOTS = re.compile(_trie_pattern(BROWSER_LIKE_ROBOTS))
_EXCLUSIONS = re.compile("|".join(_lowered(pattern) for pattern in _EXCLUSION_PATTERNS))


def is_listed_crawler(user_agent: str) -> bool:
    """crawlerdetect's verdict: a listed pattern matches what its exclusions leave of the agent."""
    agent = _EXCLUSIONS.sub("", user_agent.strip().lower())
    return bool(agent) and bool(
        _LISTED_WORDS.search(agent)
        or _LISTED_PREFIXES.match(agent)
        or _LISTED_PATTERNS.search(agent)
    )


def _user_agent_reason(user_agent: str, lowered: str) -> Flag | None:
    if not user_agent or len(user_agent) >= MAX_LENGTH:
        return Flag.BOT_ABSURD_USER_AGENT
    if user_agent.startswith(("Mozilla/", "Opera/")):
        if len(user_agent) < MIN_LENGTH:
            return Flag.BOT_ABSURD_USER_AGENT
    elif not BROWSERS_WITHOUT_MOZILLA.search(lowered):
        return Flag.BOT_NOT_BROWSER
    if _HEADLESS.search(lowered):
        return Flag.BOT_HEADLESS
    named = NOT_ROBOTS.sub("", lowered)
    if (
        _BROWSER_LIKE_ROBOTS.search(named)
        or _SELF_DECLARED.search(named)
        or is_listed_crawler(named)
    ):
        return Flag.BOT_CRAWLER
    return None


@dataclass(frozen=True, slots=True)
class AgentVerdict:
    is_bot: bool
    device_class: str  # desktop, mobile, tablet, or bot
    browser: str  # ua-parser's family: "Chrome", "Mobile Safari", "Samsung Internet", "Other"
    os: str  # ua-parser's family: "Windows", "iOS", "Android", "Mac OS X", "Other"
    flags: str  # the bot reasons, comma-separated; empty for a browser


def _families(user_agent: str) -> tuple[str, str]:
    """Browser and operating system by ua-parser's maintained rules (uap-core's regexes, run by
    ua-parser-rs): tens of microseconds, once per distinct agent (``classify`` caches)."""
    parsed = parse(user_agent[:MAX_LENGTH])
    browser = parsed.user_agent.family if parsed.user_agent else "Other"
    system = parsed.os.family if parsed.os else "Other"
    return browser[:FAMILY_LENGTH], system[:FAMILY_LENGTH]


@lru_cache(maxsize=CACHE_SIZE)
def classify(user_agent: str, accept_language: bool) -> AgentVerdict:
    lowered = user_agent.lower()
    reason = _user_agent_reason(user_agent, lowered)
    flags = [reason] if reason else []
    if not accept_language:
        flags.append(Flag.BOT_NO_ACCEPT_LANGUAGE)
    browser, system = _families(user_agent)
    if flags:
        return AgentVerdict(True, "bot", browser, system, ",".join(flags))
    if _TABLET.search(lowered):
        return AgentVerdict(False, "tablet", browser, system, "")
    if _MOBILE.search(lowered):
        return AgentVerdict(False, "mobile", browser, system, "")
    return AgentVerdict(False, "desktop", browser, system, "")
