"""A migrated database (a SQLite file, or PostgreSQL) with a small affiliate programme, for
the benchmarks.

Rows are written directly through the ORM: the benchmarks measure ingestion and writing, not
the management API, and need real merchants, partners, campaigns and links for the ingest
paths and the worker to resolve.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from backend.domain.auth import public_key
from backend.storage.db.engine import Database
from backend.storage.db.migrate import upgrade
from backend.storage.db.models import Campaign, Link, Merchant, Partner

MERCHANTS = (
    ("Nordlicht Outdoor", "EUR", "nordlicht-outdoor.example", 800, 0),
    ("Sakura Tea House", "JPY", "sakura-tea.example", 1200, 100),
)
PARTNERS = ("trailrunning-weekly.example", "dealhunter.example", "tea-ceremony.example")


@dataclass(frozen=True, slots=True)
class BenchLink:
    id: int
    code: str
    merchant_key: str
    currency: str
    publisher_site: str


@dataclass(frozen=True, slots=True)
class BenchProgramme:
    """Two merchants (EUR, JPY), three partners, a link for each partner and merchant."""

    links: tuple[BenchLink, ...]

    @property
    def eur_link(self) -> BenchLink:
        return next(link for link in self.links if link.currency == "EUR")


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def create_programme_database(path: Path) -> BenchProgramme:
    """Migrate a fresh SQLite file at ``path`` and fill in the programme."""
    return await create_programme(sqlite_url(path))


async def create_programme(url: str) -> BenchProgramme:
    """Migrate the database at ``url`` and add a programme (new keys and codes each time)."""
    database = Database.connect(url)
    try:
        await upgrade(database, url)
        async with database.session(write=True) as session:
            merchants = [
                Merchant(
                    name=name,
                    key=public_key("mk_"),
                    postback_secret=secrets.token_urlsafe(32),
                    currency=currency,
                    domains=[domain],
                )
                for name, currency, domain, _, _ in MERCHANTS
            ]
            partners = [Partner(name=site, key=public_key("pk_")) for site in PARTNERS]
            session.add_all([*merchants, *partners])
            await session.flush()
            campaigns = [
                Campaign(
                    merchant_id=merchant.id,
                    name="Always on",
                    destination_url=f"https://{domain}/?ref=affiliate",
                    commission_bps=bps,
                    commission_flat_minor=flat,
                )
                for merchant, (_, _, domain, bps, flat) in zip(merchants, MERCHANTS, strict=True)
            ]
            session.add_all(campaigns)
            await session.flush()
            links: list[tuple[Link, Merchant, str]] = []
            for partner, site in zip(partners, PARTNERS, strict=True):
                for campaign, merchant in zip(campaigns, merchants, strict=True):
                    code = "b" + secrets.token_urlsafe(8)
                    link = Link(code=code, partner_id=partner.id, campaign_id=campaign.id)
                    links.append((link, merchant, site))
            session.add_all([link for link, _, _ in links])
            await session.commit()
            return BenchProgramme(
                tuple(
                    BenchLink(link.id, link.code, merchant.key, merchant.currency, site)
                    for link, merchant, site in links
                )
            )
    finally:
        await database.dispose()
