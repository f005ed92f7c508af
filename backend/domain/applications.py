"""Applications to a merchant's programme: apply, confirm the address, then approval by an
admin (or at once when the programme says so), which makes the partner, its user and its
membership of the programme.

Every step writes its mail in the same transaction (``backend.domain.mail``). An application
keeps the applicant's argon2 password hash, so approval needs no further step from them. An
address that already has an account, or an application to this programme that is not
rejected, is not taken again; the applicant sees the same answer either way (nothing tells
which addresses exist), and the address's owner gets a mail saying so.
"""

from __future__ import annotations

import contextlib
import re

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.validation import FieldError
from backend.domain import account_tokens
from backend.domain.accounts import check_password
from backend.domain.auth import hash_password, public_key
from backend.domain.mail import enqueue, notify_admins
from backend.storage.db.models import (
    ApplicationStatus,
    Merchant,
    Partner,
    PartnerApplication,
    Programme,
    ProgrammeMember,
    Role,
    TokenPurpose,
    User,
)

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
MAX_PASSWORD = 1000  # argon2 hashes any length; this bounds the work one form can ask for
EMAIL = re.compile(r"^[^@\s<>,;\"]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")


class ApplicationForm(msgspec.Struct):
    """What an applicant types, as the public form posts it."""

    name: str = ""
    email: str = ""
    website: str = ""
    promotion: str = ""
    password: str = ""
    terms: str = ""


def check_form(form: ApplicationForm) -> dict[str, str]:
    """Every field's error, by field name (empty: all fine)."""
    errors: dict[str, str] = {}
    if not 1 <= len(form.name.strip()) <= 200:
        errors["name"] = "Give your name or your site's, up to 200 characters."
    if len(form.email) > 320 or not EMAIL.match(form.email.strip()):
        errors["email"] = "Give an e-mail address like you@example.com."
    website = form.website.strip()
    if len(website) > 2048 or not re.match(r"^https?://[^\s/]+\.[^\s]+$", website):
        errors["website"] = "Give your website's full address, starting with https://."
    if not 1 <= len(form.promotion.strip()) <= 2000:
        errors["promotion"] = "Say how you promote, up to 2,000 characters."
    try:
        check_password(form.password)
    except FieldError as error:
        errors["password"] = error.message[0].upper() + error.message[1:] + "."
    if len(form.password) > MAX_PASSWORD:
        errors["password"] = f"The password must have at most {MAX_PASSWORD:,} characters."
    if form.terms != "accepted":
        errors["terms"] = "Accept the programme's terms to apply."
    return errors


async def open_programme(session: AsyncSession, slug: str) -> tuple[Programme, Merchant] | None:
    """The programme behind ``/join/{slug}`` while it takes applications."""
    if not SLUG.match(slug):
        return None
    row = (
        await session.execute(
            select(Programme, Merchant)
            .join(Merchant, Merchant.id == Programme.merchant_id)
            .where(Programme.slug == slug, Programme.open.is_(True))
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def apply(
    session: AsyncSession, programme: Programme, merchant: Merchant, form: ApplicationForm, url: str
) -> PartnerApplication | None:
    """A new unconfirmed application with its confirmation mail; None when the address is
    taken (its owner is told by mail instead)."""
    email = form.email.strip().lower()
    taken = await session.scalar(select(User.id).where(User.email == email))
    if taken is None:
        taken = await session.scalar(
            select(PartnerApplication.id).where(
                PartnerApplication.merchant_id == merchant.id,
                PartnerApplication.email == email,
                PartnerApplication.status != ApplicationStatus.REJECTED,
            )
        )
    if taken is not None:
        enqueue(
            session,
            to=email,
            template="application_taken",
            context={"programme": merchant.name, "login": f"{url}/login", "reset": f"{url}/reset"},
        )
        await session.commit()
        return None
    application = PartnerApplication(
        merchant_id=merchant.id,
        name=form.name.strip(),
        email=email,
        website=form.website.strip(),
        promotion=form.promotion.strip(),
        password_hash=hash_password(form.password),
        status=ApplicationStatus.UNCONFIRMED,
    )
    session.add(application)
    await session.flush()
    token = account_tokens.issue(session, TokenPurpose.CONFIRM, application_id=application.id)
    enqueue(
        session,
        to=email,
        template="application_confirm",
        context={"programme": merchant.name, "link": f"{url}/join/confirm/{token}"},
    )
    await session.commit()
    return application


async def confirm(session: AsyncSession, token: str, url: str) -> PartnerApplication | None:
    """The address is the applicant's: the application waits for an admin (admins are told),
    or is approved at once when the programme approves automatically."""
    row = await account_tokens.redeem(session, token, TokenPurpose.CONFIRM)
    application = (
        await session.get(PartnerApplication, row.application_id)
        if row and row.application_id is not None
        else None
    )
    if application is None or application.status != ApplicationStatus.UNCONFIRMED:
        await session.rollback()
        return None
    application.status = ApplicationStatus.PENDING
    programme = await session.get(Programme, application.merchant_id)
    merchant = await session.get(Merchant, application.merchant_id)
    assert merchant is not None  # a foreign key
    if programme is not None and programme.auto_approve:
        # approve refuses before writing anything when the address got an account meanwhile:
        # then a person decides
        with contextlib.suppress(FieldError):
            await approve(session, application, "auto-approval", url)
            return application
    await notify_admins(
        session,
        "application_new",
        {
            "programme": merchant.name,
            "name": application.name,
            "email": application.email,
            "website": application.website,
            "link": f"{url}/admin/applications",
        },
    )
    await session.commit()
    return application


async def approve(
    session: AsyncSession, application: PartnerApplication, actor: str, url: str
) -> Partner:
    """The applicant becomes a partner with a user (the password they chose) and a member of
    the programme; they are told by mail. Commits."""
    if application.status != ApplicationStatus.PENDING:
        raise FieldError("status", f"the application is {application.status}, not pending")
    if await session.scalar(select(User.id).where(User.email == application.email)):
        raise FieldError("email", f"a user with the email {application.email} exists")
    merchant = await session.get(Merchant, application.merchant_id)
    assert merchant is not None  # a foreign key
    partner = Partner(name=application.name, contact_email=application.email, key=public_key("pk_"))
    session.add(partner)
    await session.flush()
    session.add(
        User(
            email=application.email,
            password_hash=application.password_hash,
            role=Role.PARTNER.value,
            partner_id=partner.id,
        )
    )
    session.add(ProgrammeMember(partner_id=partner.id, merchant_id=merchant.id))
    application.status = ApplicationStatus.APPROVED
    application.partner_id = partner.id
    application.decided_by = actor
    enqueue(
        session,
        to=application.email,
        template="application_approved",
        context={"programme": merchant.name, "login": f"{url}/login"},
    )
    await session.commit()
    return partner


async def reject(session: AsyncSession, application: PartnerApplication, actor: str) -> None:
    if application.status != ApplicationStatus.PENDING:
        raise FieldError("status", f"the application is {application.status}, not pending")
    merchant = await session.get(Merchant, application.merchant_id)
    assert merchant is not None  # a foreign key
    application.status = ApplicationStatus.REJECTED
    application.decided_by = actor
    enqueue(
        session,
        to=application.email,
        template="application_rejected",
        context={"programme": merchant.name},
    )
    await session.commit()
