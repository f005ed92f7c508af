"""The partner's own tools (``/portal``): pages for partner users only, each scoped to the
signed-in partner; to an admin, and for another partner's objects, they do not exist (404)."""

from backend.web.portal.coupons import COUPON_HANDLERS
from backend.web.portal.links import LINK_HANDLERS
from backend.web.portal.profile import PROFILE_HANDLERS

PORTAL_HANDLERS = [*LINK_HANDLERS, *COUPON_HANDLERS, *PROFILE_HANDLERS]

__all__ = ["PORTAL_HANDLERS"]
