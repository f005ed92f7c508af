"""The bot classifier against real user-agent corpora from packages, not hand-picked strings.

Crawlers: the example agents of every pattern in ``crawler-user-agents``. Browsers: the agents
of real traffic that ``fake-useragent`` ships. Both are judged by the user agent alone (with an
Accept-Language header), so the header test cannot flatter the figures. ``pytest -s`` prints
them.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import crawleruseragents
import fake_useragent
import pytest
from crawlerdetect import CrawlerDetect

from backend.quality.agents import classify, is_listed_crawler
from tests.support import BROWSER_HEADERS

# Measured: precision 0.9995 (one "browser" is a user agent wrapped in quotes), recall 0.9830.
MIN_PRECISION = 0.998
MIN_RECALL = 0.975


@cache
def crawler_agents() -> frozenset[str]:
    path = Path(crawleruseragents.__file__).parent / "crawler-user-agents.json"
    entries = json.loads(path.read_text())
    return frozenset(agent for entry in entries for agent in entry.get("instances", []))


@cache
def browser_agents() -> frozenset[str]:
    path = Path(fake_useragent.__file__).parent / "data" / "browsers.jsonl"
    with path.open() as lines:
        return frozenset(json.loads(line)["useragent"] for line in lines)


def test_precision_and_recall_on_real_user_agents() -> None:
    crawlers, browsers = crawler_agents(), browser_agents()
    assert len(crawlers) > 1000, "the crawler corpus is missing"
    assert len(browsers) > 500, "the browser corpus is missing"
    caught = sum(classify(agent, True).is_bot for agent in crawlers)
    mistaken = sorted(agent for agent in browsers if classify(agent, True).is_bot)
    precision = caught / (caught + len(mistaken))
    recall = caught / len(crawlers)
    figures = (
        f"precision {precision:.4f}, recall {recall:.4f}: {caught} of {len(crawlers)} crawlers "
        f"and {len(mistaken)} of {len(browsers)} browsers taken for bots {mistaken[:3]}"
    )
    print(figures)
    assert precision >= MIN_PRECISION, figures
    assert recall >= MIN_RECALL, figures


def test_compiled_crawler_list_answers_as_crawlerdetect_does() -> None:
    detector = CrawlerDetect()
    disagree = [
        agent
        for agent in sorted(crawler_agents() | browser_agents())
        if is_listed_crawler(agent) != detector.is_crawler(agent)
    ]
    assert disagree == []


HEADLESS_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/131.0.0.0 Safari/537.36"
)


@pytest.mark.parametrize(
    ("agent", "reason"),
    [
        (HEADLESS_CHROME, "bot:headless"),
        (
            "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) "
            "PhantomJS/2.1.1 Safari/538.1",
            "bot:headless",
        ),
        (BROWSER_HEADERS["User-Agent"] + " Selenium/4.27", "bot:headless"),
        (BROWSER_HEADERS["User-Agent"] + " (webdriver)", "bot:headless"),
        ("", "bot:absurd_user_agent"),
        ("Mozilla/5.0", "bot:absurd_user_agent"),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) " + "A" * 480, "bot:absurd_user_agent"),
        ("Chrome/131.0.0.0 Safari/537.36", "bot:not_browser"),
        ("python-requests/2.32.3", "bot:not_browser"),
        ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", "bot:crawler"),
    ],
)
def test_automation_and_absurd_agents_are_bots(agent: str, reason: str) -> None:
    verdict = classify(agent, True)
    assert (verdict.is_bot, verdict.device_class, verdict.flags) == (True, "bot", reason)


def test_a_browser_without_accept_language_is_a_bot() -> None:
    verdict = classify(BROWSER_HEADERS["User-Agent"], False)
    assert (verdict.is_bot, verdict.flags) == (True, "bot:no_accept_language")


@pytest.mark.parametrize(
    ("agent", "device", "browser"),
    [
        (BROWSER_HEADERS["User-Agent"], "desktop", "chrome"),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3_2 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/18.3.1 Mobile/15E148 Safari/604.1",
            "mobile",
            "safari",
        ),
        (
            "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36",
            "tablet",
            "chrome",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "desktop",
            "firefox",
        ),
    ],
)
def test_browsers_get_their_device_class_and_family(agent: str, device: str, browser: str) -> None:
    verdict = classify(agent, True)
    assert (verdict.is_bot, verdict.device_class, verdict.browser, verdict.flags) == (
        False,
        device,
        browser,
        "",
    )
