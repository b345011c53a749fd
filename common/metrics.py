"""`GET /metrics` for both services: who may read it, and the requests-by-route counter.

Each application has its own `CollectorRegistry` (never prometheus-client's global one: the
tests run several applications in one process, and each must count only its own). The
endpoint is closed unless the operator opens it (`*_METRICS_PUBLIC`): a scraper presents a
registered client's credentials (HTTP Basic) or a Bearer token with the `chat:server`
scope. How each service checks those is its own business (`MetricsAccess`); what a refusal
looks like is decided here, once.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from common.credentials import basic_credentials, bearer_offset

SERVER_SCOPE = "chat:server"
CHALLENGE = 'Basic realm="metrics", Bearer realm="metrics"'
NO_STORE = {"Cache-Control": "no-store"}
# The request methods counted by name; any other is counted as "other" (bounded labels).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route label of a request no route matched (404, 405)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Verdict(Enum):
    """What a credential presented to `/metrics` is worth."""

    GRANTED = "granted"
    NO_CREDENTIAL = "no_credential"  # none of either scheme
    BAD_CLIENT = "bad_client"  # Basic credentials of no registered client
    BAD_TOKEN = "bad_token"  # a Bearer token that is not active
    NOT_A_SERVER = "not_a_server"  # an active token without the chat:server scope
    UNAVAILABLE = "unavailable"  # the token could not be checked now


class MetricsAccess(Protocol):
    """How one service checks a scraper's credentials."""

    def client(self, client_id: str, secret: str) -> bool:
        """Whether these are a registered client's credentials (compared in constant time)."""

    async def bearer(self, token: str) -> Verdict:
        """What this Bearer token is worth."""


# Set when the application starts (the chat service checks tokens with a client it opens
# then); the route reads it per request.
METRICS_ACCESS = web.AppKey("metrics_access", MetricsAccess)


def same_secret(given: str, expected: str) -> bool:
    """Constant-time equality of two strings, whatever their lengths."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def _challenge(value: str) -> dict[str, str]:
    return {"WWW-Authenticate": value}


# What each refusal is on the wire: status, error code, description, headers.
_REFUSALS: dict[Verdict, tuple[int, str, str, dict[str, str]]] = {
    Verdict.NO_CREDENTIAL: (
        401, "unauthorized", "metrics require credentials", _challenge(CHALLENGE)
    ),
    Verdict.BAD_CLIENT: (
        401, "invalid_client", "client authentication failed", _challenge(CHALLENGE)
    ),
    Verdict.BAD_TOKEN: (
        401,
        "invalid_token",
        "the access token is invalid or expired",
        _challenge('Bearer realm="metrics", error="invalid_token"'),
    ),
    Verdict.NOT_A_SERVER: (
        403,
        "insufficient_scope",
        f"reading metrics needs a client's credentials or the {SERVER_SCOPE} scope",
        _challenge(f'Bearer realm="metrics", error="insufficient_scope", scope="{SERVER_SCOPE}"'),
    ),
    Verdict.UNAVAILABLE: (
        503, "temporarily_unavailable", "cannot check the credential now", {"Retry-After": "1"}
    ),
}  # fmt: skip


def metrics_route(registry: CollectorRegistry, *, public: bool) -> web.RouteDef:
    """`GET /metrics`: the registry in Prometheus' text format, to anyone when `public`,
    else to a registered client (Basic) or a `chat:server` token (Bearer), as the app's
    `METRICS_ACCESS` decides."""

    async def metrics(request: web.Request) -> web.Response:
        if not public:
            access = request.app[METRICS_ACCESS]
            verdict = await _verdict(request.headers.get("Authorization"), access)
            if verdict is not Verdict.GRANTED:
                status, error, description, headers = _REFUSALS[verdict]
                return web.json_response(
                    {"error": error, "error_description": description},
                    status=status,
                    headers={**headers, **NO_STORE},
                )
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, **NO_STORE})

    return web.get("/metrics", metrics)


async def _verdict(authorization: str | None, access: MetricsAccess) -> Verdict:
    if authorization is None:
        return Verdict.NO_CREDENTIAL
    offset = bearer_offset(authorization)
    if offset is not None:
        return await access.bearer(authorization[offset:])
    if authorization[:6].lower() != "basic ":
        return Verdict.NO_CREDENTIAL  # neither scheme: as if none were presented
    pair = basic_credentials(authorization[6:])
    if pair is None or not access.client(*pair):
        return Verdict.BAD_CLIENT
    return Verdict.GRANTED


def count_requests(requests: Counter) -> Middleware:
    """Counts every request by method, route and status. The route is the matched
    resource's canonical path (`/api/rooms/{room}`), never the raw path, so the labels stay
    bounded whatever clients ask for. Put it first: it sees the status the other
    middlewares settled on."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            _count(requests, request, exc.status)
            raise
        except Exception:
            _count(requests, request, 500)
            raise
        # A request whose client hung up (cancelled) got no answer: it is not counted.
        _count(requests, request, response.status)
        return response

    return middleware


def _count(requests: Counter, request: web.Request, status: int) -> None:
    resource = request.match_info.route.resource
    route = UNMATCHED if resource is None else resource.canonical
    method = request.method if request.method in METHODS else "other"
    requests.labels(method, route, str(status)).inc()
