"""Destination templates: the click id in whichever parameter the destination wants it.

Affiliate networks take a publisher's click id only in their own sub-id parameter (Awin's
``clickref``, CJ's ``sid``, Impact's ``subId1``), so a campaign's or link's destination may hold
macros such as ``{click_id}``, ``{partner}`` or ``{sub1}``, replaced at the redirect by the
click's values, URL-encoded. A destination without a macro gets ``ct_click=`` appended as before.
A template is checked when it is saved (unknown macros and macros in the scheme or host are
refused there), so the redirect never meets one it cannot fill.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

SUB_KEYS = ("sub1", "sub2", "sub3", "sub4", "sub5")
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
MACROS = ("click_id", "link", "partner", "campaign", *SUB_KEYS, *UTM_KEYS)
MACRO_LIST = ", ".join(f"{{{name}}}" for name in MACROS)  # for error messages and the schema
_KNOWN = frozenset(MACROS)

_BRACED = re.compile(r"\{([^{}]*)\}")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")  # never percent-encoded


def is_template(url: str) -> bool:
    """Whether ``url`` holds macros (a saved destination has no other braces)."""
    return "{" in url


def template_problem(url: str, macros: tuple[str, ...] = MACROS) -> str | None:
    """Why ``url`` cannot be a destination template (or a template of ``macros``, such as a
    partner's postback), or None when it can.

    A brace is not allowed in a URL unencoded (RFC 3986), so every brace must belong to a
    known macro; and macros may stand only in the path, query and fragment, so a template
    always stays on the host it names.
    """
    known = _KNOWN if macros is MACROS else frozenset(macros)
    unknown = sorted({name for name in _BRACED.findall(url) if name not in known})
    if unknown:
        named = ", ".join(f"{{{name}}}" for name in unknown)
        listed = ", ".join(f"{{{name}}}" for name in macros)
        return f"unknown macro {named}; the macros are {listed}"
    if "{" in _BRACED.sub("", url) or "}" in _BRACED.sub("", url):
        return "a brace that is not part of a macro (write it as %7B or %7D)"
    try:
        parts = urlsplit(url)
    except ValueError:
        return None  # the URL check names what is wrong
    if "{" in parts.scheme or "{" in parts.netloc:
        return "macros may stand in the path, query or fragment only: the host stays fixed"
    return None


def expand(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each macro replaced by its value, percent-encoded so that no value
    can add a parameter, a path segment, a line break or another host; absent values are
    empty."""
    pieces = _pieces(template)
    filled = list(pieces)
    for index in range(1, len(filled), 2):
        filled[index] = _encoded(values.get(filled[index], ""))
    return "".join(filled)


@functools.lru_cache(maxsize=4096)
def _pieces(template: str) -> tuple[str, ...]:
    """Literal text and macro names alternating (``a{x}b`` is ``("a", "x", "b")``): a link's
    template is split once, not at every click."""
    return tuple(_BRACED.split(template))


def _encoded(value: str) -> str:
    return value if _UNRESERVED.issuperset(value) else quote(value, safe="")
