"""Quality flags read as words with an explanation on the pages, and a conversion held for
review says why and what approving it will do."""

from __future__ import annotations

import html
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from backend.domain.quality.flags import DESCRIBED, Flag, described
from backend.storage.db.engine import Database
from backend.storage.db.models import Conversion
from tests.support import Programme, add_user, follow_link, sign_in


def test_every_flag_has_words_and_a_reason() -> None:
    assert set(DESCRIBED) == set(Flag)
    assert all(words and why for words, why in DESCRIBED.values())
    assert described("prefix_burst,review") == [
        ("prefix_burst", "many orders from one network", "several sales from one network at once"),
        ("review", *DESCRIBED[Flag.REVIEW]),
    ]
    assert described("from_an_older_release") == [
        ("from_an_older_release", "from_an_older_release", "")
    ]


async def test_a_held_conversion_says_why_and_what_approving_does(
    client: AsyncTestClient[Any], database: Database, programme: Programme, consumer: Any
) -> None:
    click_id = await follow_link(client, programme.link["code"])
    await client.get(  # seconds after the click: too fast, held for review
        "/p.gif",
        params={"m": programme.merchant["key"], "oid": "H-1", "amt": "80.00", "clk": click_id},
    )
    await consumer.drain()
    async with database.session() as session:
        conversion = await session.scalar(select(Conversion).where(Conversion.order_id == "H-1"))
    assert conversion is not None
    assert {"too_fast", "review"} <= set(conversion.flags.split(","))

    await sign_in(client, database)
    page = html.unescape((await client.get(f"/conversions/{conversion.id}")).text)
    assert "Held for review" in page
    why = "Why: <strong>bought too fast</strong> (the sale came within seconds of its click)."
    assert why in page
    # The campaign pays 10% plus 0.50: approving pays €8.50 to the partner.
    assert f"counts the sale for {programme.partner['name']} and pays €8.50" in page
    assert "<strong>bought too fast</strong>: the sale came within seconds" in page
    listing = html.unescape((await client.get("/conversions")).text)
    title = 'title="the sale came within seconds of its click"'
    assert f'<span class="flag" {title}>bought too fast</span>' in listing

    await client.post("/logout", data={"_csrf_token": client.cookies.get("csrftoken", "")})
    await add_user(database, "p@example.com", "partner", programme.partner["id"])
    await sign_in(client, database, "p@example.com")
    mine = html.unescape((await client.get(f"/conversions/{conversion.id}")).text)
    assert "The merchant checks it before it counts" in mine
    assert "Approving it" not in mine
