"""The auth service's application factory."""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning
from aiohttp_session import session_middleware

from auth_service import openapi, views
from auth_service.browsers import browser_origins
from auth_service.components import COMPONENTS, AuthComponents
from auth_service.errors import error_middleware
from auth_service.metrics import AuthMetricsAccess
from auth_service.sessions import one_session_cookie
from auth_service.settings import AuthSettings
from common.http_limits import body_deadline
from common.metrics import METRICS_ACCESS, count_requests, metrics_route
from common.redis import REDIS_ERRORS, prepare

log = logging.getLogger(__name__)

# Bodies are small forms and JSON objects; this also bounds a hostile token parameter.
MAX_BODY = 256 * 1024


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    parts = app[COMPONENTS]
    try:
        await prepare(parts.redis)
        await parts.keyring.load()
        claimed = await parts.users.backfill_skeletons()
        if claimed:
            log.info("recorded the look-alike skeletons of earlier users", extra={"users": claimed})
    except REDIS_ERRORS:
        # Start anyway: /readyz says 503 and the ring loads on first use once Redis is back.
        log.warning("redis unavailable at start-up; signing keys will load when it returns")
    yield
    await parts.aclose()


def create_app(settings: AuthSettings) -> web.Application:
    # aiohttp-session 2.12 keeps its state under string request keys; that is its business.
    warnings.filterwarnings("ignore", category=NotAppKeyWarning, module="aiohttp_session")
    parts = AuthComponents.build(settings)
    app = web.Application(
        middlewares=[
            count_requests(parts.metrics.http_requests),
            # Outermost: a page from elsewhere is refused before anything reads its request,
            # and a listed page may read every answer, errors included.
            browser_origins(settings.allowed_origins),
            error_middleware,
            body_deadline(settings.http),
            one_session_cookie(settings.cookie_name),
            session_middleware(parts.sessions),
        ],
        client_max_size=MAX_BODY,
    )
    app[COMPONENTS] = parts
    app[METRICS_ACCESS] = AuthMetricsAccess(parts.clients, parts.introspector)
    app.cleanup_ctx.append(_lifecycle)
    app.add_routes(views.ROUTES)
    app.add_routes(openapi.routes())
    app.add_routes([metrics_route(parts.metrics.registry, public=settings.metrics_public)])
    return app
