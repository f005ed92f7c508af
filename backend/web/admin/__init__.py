"""Admin pages: the programme's objects, accounts and conversion decisions, server-rendered.

``backend.web.site`` mounts every handler in ``ADMIN_HANDLERS`` under ``/admin`` behind the
admins-only guard of ``backend.web.signin``; ``conversions_page`` and ``conversion_page`` are
open to partner users too, limited to their own conversions and without the actions.
"""

from __future__ import annotations

from litestar import get
from litestar.response import Redirect
from litestar.types import ControllerRouterHandler

from backend.web.admin.api_keys import ApiKeyPages
from backend.web.admin.applications import APPLICATION_HANDLERS
from backend.web.admin.campaigns import CampaignPages
from backend.web.admin.conversions import (
    change_one_status,
    change_statuses,
    conversion_page,
    conversions_page,
)
from backend.web.admin.coupon_requests import COUPON_REQUEST_HANDLERS
from backend.web.admin.coupons import CouponPages
from backend.web.admin.groups import GroupPages
from backend.web.admin.links import LinkPages
from backend.web.admin.mail import MAIL_HANDLERS
from backend.web.admin.merchants import MerchantPages
from backend.web.admin.overrides import OverridePages
from backend.web.admin.partners import PartnerPages
from backend.web.admin.payouts import PayoutPages
from backend.web.admin.sources import SourcePages
from backend.web.admin.users import UserPages


@get("/")
async def admin_home() -> Redirect:
    return Redirect("/admin/merchants")


ADMIN_HANDLERS: list[ControllerRouterHandler] = [
    admin_home,
    MerchantPages,
    PartnerPages,
    CampaignPages,
    LinkPages,
    OverridePages,
    CouponPages,
    SourcePages,
    UserPages,
    ApiKeyPages,
    PayoutPages,
    GroupPages,
    change_statuses,
    change_one_status,
    *APPLICATION_HANDLERS,
    *MAIL_HANDLERS,
    *COUPON_REQUEST_HANDLERS,
]

__all__ = ["ADMIN_HANDLERS", "conversion_page", "conversions_page"]
