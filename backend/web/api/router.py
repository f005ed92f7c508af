"""The management API under ``/api/v1``: the keyed routes behind one key check and one admin
guard (``backend.web.api.keys``), and the postback, which is signed with the merchant's secret
instead."""

from __future__ import annotations

from litestar import Router
from litestar.di import Provide
from litestar.middleware import DefineMiddleware

from backend.web.api.clicks import create_click
from backend.web.api.conversions import ConversionController
from backend.web.api.coupons import CouponController
from backend.web.api.deps import SESSIONS, provide_viewer, too_deep
from backend.web.api.groups import GroupController
from backend.web.api.hooks import HOOK_CONTROLLERS
from backend.web.api.keys import ApiKeyAuth, admin_keys_only, request_reader
from backend.web.api.openapi import API_KEY
from backend.web.api.overrides import OverrideController
from backend.web.api.payouts import PAYOUT_CONTROLLERS
from backend.web.api.postback import postback, rotate_postback_secret
from backend.web.api.resources import RESOURCE_CONTROLLERS
from backend.web.api.sources import SourceController, network_postback
from backend.web.api.stats import stats


def api_router() -> Router:
    keyed = Router(
        path="/",
        route_handlers=[
            *RESOURCE_CONTROLLERS,
            ConversionController,
            CouponController,
            OverrideController,
            SourceController,
            *HOOK_CONTROLLERS,
            *PAYOUT_CONTROLLERS,
            GroupController,
            create_click,
            rotate_postback_secret,
            stats,
        ],
        security=API_KEY,
        middleware=[DefineMiddleware(ApiKeyAuth)],
        guards=[admin_keys_only],
        dependencies={
            "reader": Provide(request_reader, sync_to_thread=False),
            "viewer": Provide(provide_viewer),
        },
    )
    return Router(
        path="/api/v1",
        route_handlers=[keyed, postback],
        dependencies=SESSIONS,
        exception_handlers={RecursionError: too_deep},
    )


def network_router() -> Router:
    """``/pb/{token}``: networks' postbacks, authenticated by their source's token."""
    return Router(path="/", route_handlers=[network_postback], dependencies=SESSIONS)
