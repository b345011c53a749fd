"""The API's failures as values, and the one place they become JSON responses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from service.broker.base import UNAVAILABLE
from service.rooms.access import Decision, Verdict

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer other than success: status, error code, description, headers."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers or {}


def forbidden() -> ApiError:
    # The same words whether or not the room exists: no oracle.
    return ApiError(403, "forbidden", "you may not do that in this room")


def not_found(description: str) -> ApiError:
    return ApiError(404, "not_found", description)


def bad_request(description: str, error: str = "invalid_request") -> ApiError:
    return ApiError(400, error, description)


def unavailable(description: str = "try again shortly") -> ApiError:
    return ApiError(503, "temporarily_unavailable", description, headers={"Retry-After": "1"})


def refused(decision: Decision) -> ApiError:
    """What a room access refusal is over HTTP."""
    if decision.verdict is Verdict.UNKNOWN_NAMESPACE:
        return bad_request("no namespace of that name is configured", "unknown_namespace")
    if decision.verdict is Verdict.BAD_ROOM:
        return bad_request(
            "a DM room is dm:<username>,<username>, lower case and sorted", "bad_room"
        )
    if decision.verdict is Verdict.NO_SUCH_ROOM:
        return not_found("no such room")
    return forbidden()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
def api_errors(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Renders `ApiError`, aiohttp's own HTTP errors on `/api/` paths, and 404 / 405
    anywhere, as JSON."""
    if request.match_info.http_exception is None and _upgrade(request):
        # A WebSocket endpoint outside the API raises none of these: its handler's coroutine
        # is handed on, so each open socket keeps no frame of this middleware.
        return handler(request)
    return _rendered(request, handler)


def _upgrade(request: web.Request) -> bool:
    return not request.path.startswith("/api/") and (
        request.headers.get("Upgrade", "").lower() == "websocket"
    )


async def _rendered(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return _json(error.status, error.error, error.description, error.headers)
    except UNAVAILABLE:
        if not request.path.startswith("/api/"):
            raise
        return _json(503, "temporarily_unavailable", "try again shortly", {"Retry-After": "1"})
    except web.HTTPException as exc:
        # The API's errors, and anywhere a path or method that does not exist (as the auth
        # service answers): JSON, not aiohttp's text.
        if exc.status < 400 or not (request.path.startswith("/api/") or exc.status in (404, 405)):
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status, "invalid_request"
        )
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return _json(exc.status, code, exc.reason, headers)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        if not request.path.startswith("/api/"):
            raise
        log.exception("the API failed unexpectedly")  # the traceback goes to the log only
        return _json(500, "server_error", "internal error", {})


def _json(status: int, error: str, description: str, headers: dict[str, str]) -> web.Response:
    return web.json_response(
        {"error": error, "error_description": description},
        status=status,
        headers={**headers, "Cache-Control": "no-store"},
    )
