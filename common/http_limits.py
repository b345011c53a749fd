"""How long a client may take to send a request, and how many connections a process holds.

Both services read the same four settings under their own prefix (`AUTH_`, `CHAT_`):

- `<P>_HEADER_TIMEOUT`: seconds from a connection's accept, or from the previous response on
  a kept-alive connection, until the next request head is complete (so also how long an idle
  kept-alive connection stays open);
- `<P>_BODY_TIMEOUT`: seconds from a complete head until the whole body has arrived;
- `<P>_MAX_OPEN_CONNECTIONS`: TCP connections per process, idle, pending or upgraded; past it
  a new connection is answered 503 at once instead of being left to fail `accept()`;
- `<P>_MAX_CONNECTIONS_PER_ADDRESS`: of those, how many one client address may hold (429).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware

from common.config import EnvReader
from common.log_throttle import ConditionLog

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class HttpLimits:
    """The HTTP server's bounds on slow or numerous clients."""

    header_timeout: float
    body_timeout: float
    max_open_connections: int
    max_connections_per_address: int


def read_http_limits(
    env: EnvReader, prefix: str, *, default_connections: int, default_per_address: int
) -> HttpLimits:
    return HttpLimits(
        header_timeout=env.number(f"{prefix}_HEADER_TIMEOUT", 5.0, minimum=0.5),
        body_timeout=env.number(f"{prefix}_BODY_TIMEOUT", 10.0, minimum=0.5),
        max_open_connections=env.integer(
            f"{prefix}_MAX_OPEN_CONNECTIONS", default_connections, minimum=16, maximum=1_000_000
        ),
        max_connections_per_address=env.integer(
            f"{prefix}_MAX_CONNECTIONS_PER_ADDRESS", default_per_address, minimum=1
        ),
    )


def _refusal(status: int, error: str, description: str) -> web.Response:
    response = web.json_response(
        {"error": error, "error_description": description},
        status=status,
        headers={"Cache-Control": "no-store"},
    )
    response.force_close()  # whatever else the client sends on this connection is not wanted
    return response


def body_deadline(limits: HttpLimits) -> Middleware:
    """Reads every request body in full, within `body_timeout`, before the handler runs.

    A body that does not arrive in time is a 408 and the connection is closed; a client that
    hangs up while sending it, or a body that cannot be decoded (a broken chunk or
    Content-Encoding), is a client error answered 400 and logged once per minute at most,
    never as a traceback. Handlers then read the cached body.
    """
    slow = ConditionLog(log, "request bodies too slow; answered 408", level=logging.INFO)
    gone = ConditionLog(log, "clients hung up while sending a body", level=logging.INFO)
    garbled = ConditionLog(log, "request bodies not decodable; answered 400", level=logging.INFO)

    @web.middleware
    def middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        # Without a body there is nothing to wait for: the handler's own coroutine is handed
        # on, so a request that lives long (a WebSocket) keeps no frame of this middleware.
        return read_first(request, handler) if request.body_exists else handler(request)

    async def read_first(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            async with asyncio.timeout(limits.body_timeout):
                await request.read()
        except TimeoutError:
            slow.hit(path=request.path)
            return _refusal(408, "request_timeout", "the request body did not arrive in time")
        except ConnectionError:
            gone.hit(path=request.path)
            return _refusal(400, "invalid_request", "the client closed the connection")
        except (web.RequestPayloadError, HttpProcessingError) as exc:
            # A body that breaks its own framing or Content-Encoding: the client's fault.
            garbled.hit(path=request.path, error=type(exc).__name__)
            return _refusal(400, "invalid_request", "the body could not be read")
        return await handler(request)

    return middleware
