"""The web application factory: ``create_app(settings)``.

Shared resources (database engines, Redis, the catalog cache, the stream writer) are built at
startup and hung on ``app.state``; handlers receive them from there, never from globals. The
ingest routes are answered in front of the Litestar app (``IngestFirst``); the rest is Litestar.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar
from litestar.datastructures import State
from litestar.exceptions import MethodNotAllowedException, NotFoundException
from litestar.logging.config import LoggingConfig
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.stores.redis import RedisStore
from litestar.template.config import TemplateConfig

from backend.core.ids import ClickIdSigner, CustomerHasher
from backend.core.settings import Settings
from backend.domain.geo import Countries
from backend.domain.quality.flags import described as described_flags
from backend.domain.visitor import Clients, DailySalt
from backend.storage.catalog import Catalog
from backend.storage.db.engine import Database
from backend.storage.metrics import WebCounters
from backend.storage.redis_client import connect
from backend.storage.streams.spool import Spool
from backend.storage.streams.writer import StreamWriter
from backend.web.api.openapi import RequestBodySchemas, openapi_config
from backend.web.api.router import api_router, network_router
from backend.web.health import healthz, metrics, readyz
from backend.web.ingest.routes import Ingest, IngestFirst, load_not_found_page
from backend.web.ingest.snippet import (
    Snippet,
    serve_publisher_snippet,
    serve_snippet,
    serve_versioned_snippet,
)
from backend.web.money_style import money
from backend.web.pages.errors import error_answer
from backend.web.request_telemetry import RequestTelemetry
from backend.web.security_headers import add_security_headers
from backend.web.site import SESSION_STORE, web_router

# templates/ and static/ sit at the top of the checkout; this package links to them, and the
# wheel carries them here as package data (pyproject.toml).
TEMPLATES = Path(__file__).with_name("templates").resolve()
STATIC = Path(__file__).with_name("static").resolve()


def _configure_jinja(engine: JinjaTemplateEngine) -> None:
    engine.engine.filters["money"] = money
    engine.engine.filters["flag_words"] = described_flags


def create_app(settings: Settings) -> RequestTelemetry:
    if not settings.redis_url:
        raise ValueError("create_app needs settings.redis_url (the CLI starts embedded Redis)")

    redis = connect(settings.redis_url)
    counters = WebCounters(redis, settings.metrics_target)

    @asynccontextmanager
    async def resources(app: Litestar) -> AsyncIterator[None]:
        state: State = app.state
        database = Database.connect(settings.database_url)
        catalog = Catalog(database, settings.attribution_window_days)
        spool = Spool(settings.var_dir / "spool")
        writer = StreamWriter(redis, settings.stream, spool)
        writer.start()
        state.settings = settings
        state.database = database
        state.redis = redis
        state.catalog = catalog
        state.writer = writer
        state.spool = spool
        state.counters = counters
        state.snippet = Snippet.load(STATIC / "s.js")
        state.publisher_snippet = Snippet.load(STATIC / "p.js")
        state.ingest = Ingest(
            settings=settings,
            catalog=catalog,
            writer=writer,
            salt=DailySalt(redis),
            signer=ClickIdSigner(settings.secret_key),
            customers=CustomerHasher(settings.secret_key),
            clients=Clients(settings.trusted_proxies),
            countries=Countries(settings.geoip_database),
            not_found_page=load_not_found_page(TEMPLATES),
        )
        ingest: Ingest = state.ingest
        counters.sources.update(
            queued=lambda: ingest.queued,
            spooled=lambda: writer.spooled,
            batches=lambda: writer.batches,
        )
        counters.start()
        gc.collect()
        gc.freeze()  # what startup built lives for good: keep it out of full collections
        try:
            yield
        finally:
            await writer.close()
            await counters.close()
            await redis.aclose()
            await database.dispose()
            ingest.countries.close()

    app = Litestar(
        route_handlers=[
            serve_snippet,
            serve_publisher_snippet,
            serve_versioned_snippet,
            healthz,
            readyz,
            metrics,
            api_router(),
            network_router(),
            web_router(settings),
            create_static_files_router(
                path="/static", directories=[STATIC], include_in_schema=False
            ),
        ],
        lifespan=[resources],
        # An address no route serves: a page for a browser, JSON for a program.
        exception_handlers={
            NotFoundException: error_answer,
            MethodNotAllowedException: error_answer,
        },
        stores={SESSION_STORE: RedisStore(redis, namespace="ct:session")},
        template_config=TemplateConfig(
            directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=_configure_jinja
        ),
        openapi_config=openapi_config(),
        plugins=[RequestBodySchemas()],
        before_send=[add_security_headers],
        # Records go to the root logger, which backend.core.logs formats (text or JSON).
        logging_config=LoggingConfig(
            configure_root_logger=False,
            loggers={"litestar": {"level": "INFO", "handlers": [], "propagate": True}},
            log_exceptions="always",
            # Answers to the client's own mistakes and the postback's "retry later" are expected:
            # a line each, no stack trace (a sender retrying a 409 would flood the log).
            disable_stack_trace={400, 401, 403, 404, 405, 409, 413, 429, 503},
        ),
        debug=False,
    )
    return RequestTelemetry(
        IngestFirst(app), app.state, counters, settings.trusted_proxies, settings.access_log
    )
