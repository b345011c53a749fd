"""The chat service's application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from common.connection_gate import CONNECTION_SCREEN
from common.http_limits import body_deadline
from common.metrics import METRICS_ACCESS, count_requests, metrics_route
from common.redis import REDIS_ERRORS, connect_to, prepare
from service import openapi, views
from service.api import messages as api_messages
from service.api import rooms as api_rooms
from service.api.context import API, Api
from service.api.errors import api_errors
from service.api.users import UserDirectory
from service.auth.chain import CredentialChecker, build_authenticator
from service.auth.introspection import IntrospectionClient
from service.auth.metrics_access import ChatMetricsAccess
from service.auth.signing_keys import SigningKeys
from service.broker.base import Broker
from service.broker.cluster import ClusterBroker
from service.broker.redis import RedisBroker
from service.centrifugo import view as centrifugo_view
from service.control import CHANNEL as CONTROL_CHANNEL
from service.handshake import Handshake
from service.metrics import METRICS, ChatMetrics
from service.node import REVOCATION_CHANNEL, ChatNode
from service.rooms.stores import room_stores
from service.settings import ChatSettings
from service.views import HTTP_SESSION, NODE
from service.web import pages

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # the API's bodies are small (a message is at most 4096 characters)


def create_app(settings: ChatSettings, broker: Broker | None = None) -> web.Application:
    """The app; `broker` replaces the Redis broker (unit tests use the in-memory one)."""
    metrics = ChatMetrics()
    app = web.Application(
        middlewares=[
            count_requests(metrics.http_requests),
            body_deadline(settings.http),
            api_errors,
        ],
        client_max_size=MAX_BODY,
    )
    app[METRICS] = metrics

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(
            # Idle pooled connections are given up before the auth service's own idle limit
            # (AUTH_HEADER_TIMEOUT, 5 s by default) closes them; a request that meets one
            # closed anyway is asked once more (see IntrospectionClient).
            connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=3.0),
            raise_for_status=False,
        )
        introspection = IntrospectionClient(
            session,
            url=settings.auth_url,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            timeout=settings.introspection_timeout,
            ttl=settings.introspection_cache_ttl,
            negative_ttl=settings.introspection_negative_ttl,
            max_entries=settings.introspection_cache_size,
            metrics=metrics,
        )
        keys = SigningKeys(
            session, auth_url=settings.auth_url, timeout=settings.introspection_timeout
        )
        await keys.start()  # if the auth service is down, nothing is refused locally until it is up
        checker = CredentialChecker(introspection, keys, required_scope=settings.required_scope)
        chosen = broker or redis_broker(settings)
        redis = connect_to(
            settings.redis_url,
            settings.redis_cluster_nodes,
            decode=False,
            password=settings.redis_password,
        )
        try:
            await prepare(redis)
        except REDIS_ERRORS:
            log.warning("redis unavailable at start-up; the cluster is discovered on first use")
        stores = room_stores(redis, settings, chosen.channel, sharded=chosen.sharded)
        authenticator = build_authenticator(checker, settings)
        handshake = Handshake(settings, authenticator, introspection, stores.user_sockets, metrics)
        node = ChatNode(settings, chosen, stores, introspection, checker, handshake, metrics)
        metrics.watch(
            sockets=node.sockets.__len__, links=chosen.links, presence=stores.tracker.__len__
        )
        app[NODE] = node
        app[METRICS_ACCESS] = ChatMetricsAccess(settings.client_id, settings.client_secret, checker)
        app[API] = Api(
            node,
            UserDirectory(
                session,
                auth_url=settings.auth_url,
                client_id=settings.client_id,
                client_secret=settings.client_secret,
                timeout=settings.introspection_timeout,
            ),
        )
        # An address whose handshakes keep failing is refused when it connects, unparsed.
        app[CONNECTION_SCREEN] = authenticator.failures.screen
        app[HTTP_SESSION] = session
        await chosen.start(node.hub, node)
        await stores.lease.start()
        yield
        await chosen.close()
        await redis.aclose()
        await session.close()

    async def on_shutdown(app: web.Application) -> None:
        await app[NODE].shutdown()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(on_shutdown)
    app.add_routes(views.routes)
    app.add_routes(centrifugo_view.routes)
    app.add_routes(api_rooms.routes)
    app.add_routes(api_messages.routes)
    app.add_routes(openapi.routes())
    app.add_routes([metrics_route(metrics.registry, public=settings.metrics_public)])
    app.add_routes(pages.routes(settings))
    return app


def redis_broker(settings: ChatSettings) -> Broker:
    """Sharded pub/sub on a Redis Cluster (`REDIS_CLUSTER_NODES`), else classic on one Redis."""
    events = (REVOCATION_CHANNEL, CONTROL_CHANNEL)
    if settings.redis_cluster_nodes:
        return ClusterBroker(
            settings.redis_cluster_nodes,
            event_channels=events,
            probe_interval=settings.redis_probe_interval,
            password=settings.redis_password,
        )
    return RedisBroker(
        settings.redis_url,
        event_channels=events,
        probe_interval=settings.redis_probe_interval,
        password=settings.redis_password,
    )
