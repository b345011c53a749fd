"""The auth service's Prometheus metrics (every one is listed in docs/operations.md), and who
may read them.

One `AuthMetrics` per application (in `AuthComponents`), with its own registry; children of
labelled counters are bound here, ahead of time, for a bounded set of label values.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from auth_service.clients import ClientRegistry
from auth_service.introspection import Introspector
from common.metrics import SERVER_SCOPE, MetricsAccess, Verdict
from common.redis import REDIS_ERRORS

GRANTS = ("password", "refresh_token", "client_credentials")


class AuthMetrics:
    """Every metric of one auth application, in its own registry."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.http_requests = Counter(
            "auth_http_requests",
            "HTTP requests by method, route (its pattern, not the raw path) and status",
            ["method", "route", "status"],
            registry=registry,
        )
        issued = Counter(
            "auth_tokens_issued",
            "Access tokens issued by /token, by grant type",
            ["grant"],
            registry=registry,
        )
        self.tokens_issued = {grant: issued.labels(grant) for grant in GRANTS}
        self.sessions_started = Counter(
            "auth_sessions_started",
            "Browser sessions started by /login",
            registry=registry,
        )
        introspections = Counter(
            "auth_introspections",
            "Credentials /introspect answered about, by result",
            ["result"],
            registry=registry,
        )
        self.introspection_active = introspections.labels("active")
        self.introspection_inactive = introspections.labels("inactive")
        self.logins_refused = Counter(
            "auth_logins_refused",
            "Password checks that failed (wrong password, unknown or disabled user)",
            registry=registry,
        )
        self.logins_throttled = Counter(
            "auth_logins_throttled",
            "Password checks refused with 429 before they ran (brute-force throttle)",
            registry=registry,
        )
        self._hash_queue = Gauge(
            "auth_password_hash_queue",
            "Password hashes and checks running or waiting for a hashing thread",
            registry=registry,
        )

    def watch(self, *, hash_queue: Callable[[], int]) -> None:
        """The states read at each scrape."""
        self._hash_queue.set_function(lambda: float(hash_queue()))


class AuthMetricsAccess(MetricsAccess):
    """Who may read the auth service's `/metrics`: any registered client (Basic, checked in
    constant time as `/introspect` checks it), or an active access token with `chat:server`,
    verified here by the service's own token code."""

    def __init__(self, clients: ClientRegistry, introspector: Introspector) -> None:
        self._clients = clients
        self._introspector = introspector

    def client(self, client_id: str, secret: str) -> bool:
        return (
            len(client_id) <= 256 and len(secret) <= 1024 and self._clients.check(client_id, secret)
        )

    async def bearer(self, token: str) -> Verdict:
        try:
            claims = await self._introspector.active_access_token(token)
        except REDIS_ERRORS:
            return Verdict.UNAVAILABLE
        if claims is None:
            return Verdict.BAD_TOKEN
        if SERVER_SCOPE not in str(claims.get("scope", "")).split(" "):
            return Verdict.NOT_A_SERVER
        return Verdict.GRANTED
