"""Names in user agents that the classifier reads beyond crawlerdetect's lists.

All are for the lower-cased agent, kept apart from the matching logic (``agents``) because
they are data that grows: public lists of real browsers' and crawlers' agents
(tests/fixtures/user_agents/) show which names are missing.
"""

from __future__ import annotations

import re

# Browsers whose agent does not start with ``Mozilla/``: one that names a browser engine later
# (``HTC_Touch Mozilla/4.0 (compatible; MSIE 6.0``, ``Lenovo A60 ... Browser/AppleWebKit533.1``),
# phone browsers from before smartphones (WAP and J2ME: Opera Mini, Nokia's Series 40 and 60,
# UCWEB, BlackBerry, NetFront, Obigo, UP.Browser and the MIDP/CLDC profile they all state), TV
# and text browsers, and the social apps' in-app browsers that send the app's own agent
# (Facebook's ``FBAN/FBAV``, Instagram, TikTok's ``musical_ly`` and ``BytedanceWebview``, LINE).
BROWSERS_WITHOUT_MOZILLA = re.compile(
    r"mozilla[/ ]\d|applewebkit|msie \d|iemobile|opera[/ ]\d|opera mini|midp|cldc|j2me"
    r"|up\.browser|up\.link|netfront|obigo|teleca|semc-browser|polaris|jasmine|dolfin|openwave"
    r"|ucweb|ucbrowser|uc browser|qqbrowser|onebrowser|ibrowser|blackberry|nokia|series ?[46]0"
    r"|symbian|docomo/|kddi-|brew|bada|browser/|mobile safari/|hbbtv/|elinks|links \(|lynx/"
    r"|w3m/|dillo/|ncsa_mosaic|midori/|bunjalloo"
    r"|\[fban/|fbav/|instagram \d|musical_ly|bytedancewebview|\bline/\d"
)

# Parts of browsers' agents that robots' names match, removed before those are looked for: the
# Cốc Cốc browser names itself ``CocCocBrowser`` (crawlerdetect lists the Cốc Cốc search
# engine's ``coccoc``), Facebook's app states the carrier in ``FBCR/`` (``FBCR/OrangeBotswana``
# holds ``bot``), and Firefox's ``DeveloperPreview`` is not a page previewer.
NOT_ROBOTS = re.compile(r"coccocbrowser|fbcr/[^;\]]*|developerpreview")

# Robots that send a browser's agent with their name added, which crawlerdetect does not list:
# the words robots name themselves with beyond crawlerdetect's own (``bot``, ``crawl``,
# ``monitoring``, ...), and the names without such a word of uptime and synthetic monitoring
# (Azure's AppInsights availability tests), consent and security scanners, page-speed and SEO
# auditors, and AI agents browsing for someone (``Manus-User``). Plain words, found anywhere.
BROWSER_LIKE_ROBOTS = (
    *("synthetic", "monitor", "uptime", "scan", "audit", "check", "probe", "screenshot"),
    *("preview", "pingdom", "site24x7", "statuscake", "thousandeyes", "rigor", "catchpoint"),
    *("appinsights", "cookiebot", "onetrust", "cookieyes", "cookiehub", "watchtowr", "foregenix"),
    *("lighthouse", "pagespeed", "page speed", "gtmetrix", "webpagetest", "ptst/", "hotjar"),
    *("silktide", "securityheaders", "criticalcss", "pwabuilder", "manus-user"),
)
