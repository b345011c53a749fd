"""Errors the auth service answers with, and the middleware that renders them as JSON."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from common.redis import REDIS_ERRORS

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class OAuthError(Exception):
    """An RFC 6749 §5.2 style error: an `error` code, a description and an HTTP status."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int = 400,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.headers = dict(headers or {})


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def invalid_client(description: str = "client authentication failed") -> OAuthError:
    return OAuthError(
        "invalid_client",
        description,
        status=401,
        headers={"WWW-Authenticate": 'Basic realm="auth"'},
    )


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


def invalid_token(description: str = "the access token is invalid") -> OAuthError:
    return OAuthError(
        "invalid_token",
        description,
        status=401,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def unauthenticated() -> OAuthError:
    return OAuthError(
        "unauthorized",
        "authentication required",
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="auth"'},
    )


def too_many(retry_after: int) -> OAuthError:
    """429: this caller (an account, an address) has done this too often lately."""
    return OAuthError(
        "too_many_requests",
        "too many attempts; retry later",
        status=429,
        headers={"Retry-After": str(max(retry_after, 1))},
    )


class Unavailable(OAuthError):
    """A dependency (Redis, the hashing pool) cannot serve now; the client should retry."""

    def __init__(self, description: str, *, retry_after: int = 1) -> None:
        super().__init__(
            "temporarily_unavailable",
            description,
            status=503,
            headers={"Retry-After": str(retry_after)},
        )


def error_response(error: OAuthError) -> web.Response:
    headers = {"Cache-Control": "no-store", **error.headers}
    return web.json_response(
        {"error": error.error, "error_description": error.description},
        status=error.status,
        headers=headers,
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as JSON; no traceback ever reaches a client."""
    try:
        return await handler(request)
    except OAuthError as error:
        return error_response(error)
    except REDIS_ERRORS as exc:
        log.warning("redis unavailable", extra={"path": request.path, "error": repr(exc)})
        return error_response(Unavailable("storage is unavailable, retry shortly"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = "invalid_request" if exc.status < 500 else "server_error"
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(OAuthError(code, exc.reason, status=exc.status, headers=headers))
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(OAuthError("server_error", "internal error", status=500))
