"""How both services serve HTTP: aiohttp behind a connection cap, with bounded slow clients.

`serve()` replaces `web.run_app`. It runs the application on a `HardenedSite`:
- every connection passes a `ConnectionGate`: past `max_open_connections` a new connection is
  answered 503 and closed at once, so a flood of idle or slow connections cannot exhaust the
  process's file descriptors and leave `accept()` failing for everyone;
- requests are served by `HardenedRequestHandler` (see `common/aiohttp_adapter.py`) with the
  header deadline as aiohttp's keep-alive timeout: aiohttp drops a connection whose request
  head is still incomplete when that timer fires (the body deadline is a middleware, see
  `common/http_limits.py`);
- the file-descriptor limit is raised to fit the cap, or the cap lowered to fit the limit;
- asyncio's "accept() out of system resource" lines are logged once per minute, not per try.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web

from common.aiohttp_adapter import HardenedRequestHandler, check_aiohttp
from common.http_limits import HttpLimits
from common.log_throttle import ConditionLog
from common.logging import AccessLogger

log = logging.getLogger(__name__)

FD_RESERVE = 256  # descriptors kept for Redis, the HTTP client pool, logs and over-cap answers
LINGER = 1.0  # seconds an over-cap connection may take to read its 503 and hang up
_BODY = (
    b'{"error":"temporarily_unavailable",'
    b'"error_description":"too many open connections; retry shortly"}'
)
OVER_CAP_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Cache-Control: no-store\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
)


class ConnectionGate:
    """Counts one process's open connections and turns away those past `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._full = ConditionLog(log, "connection cap reached; new connections answered 503")

    def factory(self, make_handler: Callable[[], asyncio.Protocol]) -> Callable[[], GatedProtocol]:
        return lambda: GatedProtocol(self, make_handler)

    def refused(self) -> None:
        self._full.hit(open=self.open, limit=self.limit)


class GatedProtocol(asyncio.Protocol):
    """Admits a connection to aiohttp's handler, or answers it 503 without reading it.

    A refused connection is half-closed after the answer and fully closed once the client
    hangs up or `LINGER` seconds pass: closing with its request unread would reset the
    connection and could discard the answer before the client read it.
    """

    __slots__ = ("_gate", "_inner", "_make", "_timer")

    def __init__(self, gate: ConnectionGate, make_handler: Callable[[], asyncio.Protocol]) -> None:
        self._gate = gate
        self._make = make_handler
        self._inner: asyncio.Protocol | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        gate = self._gate
        if gate.open >= gate.limit:
            gate.refused()
            assert isinstance(transport, asyncio.Transport)
            transport.write(OVER_CAP_RESPONSE)
            if transport.can_write_eof():
                transport.write_eof()
            self._timer = asyncio.get_running_loop().call_later(LINGER, transport.close)
            return
        gate.open += 1
        self._inner = self._make()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._inner is not None:
            return self._inner.eof_received()
        return False  # refused: the client read the answer and hung up; close our side

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._gate.open -= 1
            self._inner.connection_lost(exc)
        elif self._timer is not None:
            self._timer.cancel()

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class HardenedSite(web.BaseSite):
    """A TCP site whose connections pass a `ConnectionGate` to `HardenedRequestHandler`s."""

    def __init__(
        self,
        runner: web.AppRunner,
        gate: ConnectionGate,
        handler_options: dict[str, Any],
        *,
        host: str | None = None,
        port: int | None = None,
        sock: socket.socket | None = None,
        backlog: int = 128,
    ) -> None:
        super().__init__(runner)
        self.gate = gate
        self._listen_backlog = backlog
        self._app_runner = runner
        self._options = handler_options
        self._host, self._port, self._sock = host, port or 0, sock

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._app_runner.server
        assert server is not None, "the runner must be set up first"
        options = self._options

        def handler() -> HardenedRequestHandler:
            return HardenedRequestHandler(server, loop=loop, **options)

        factory = self.gate.factory(handler)
        if self._sock is not None:
            self._server = await loop.create_server(
                factory, sock=self._sock, backlog=self._listen_backlog
            )
        else:
            self._server = await loop.create_server(
                factory, self._host, self._port, backlog=self._listen_backlog, reuse_address=True
            )


def handler_options(limits: HttpLimits) -> dict[str, Any]:
    """aiohttp request-handler options both services run with."""
    return {
        "access_log_class": AccessLogger,
        # aiohttp closes a connection whose next request head is incomplete when this fires.
        "keepalive_timeout": limits.header_timeout,
        # After an early answer (408, 413) the rest of a body is read for at most this long.
        "lingering_time": 2.0,
    }


def connection_cap(limits: HttpLimits) -> int:
    """The cap to enforce: the configured one, lowered if the descriptor limit cannot fit it."""
    wanted = limits.max_open_connections + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return limits.max_open_connections
    cap = max(16, soft - FD_RESERVE)
    log.warning(
        "the file-descriptor limit cannot fit the connection cap; lowering the cap",
        extra={"fd_limit": soft, "configured": limits.max_open_connections, "cap": cap},
    )
    return cap


_ACCEPT_FAILURES = ConditionLog(log, "accept() failed: out of file descriptors or memory")


def _exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
        _ACCEPT_FAILURES.hit(error=repr(context.get("exception")))
        return
    loop.default_exception_handler(context)


async def start_site(
    app: web.Application, limits: HttpLimits, *, shutdown_timeout: float = 60.0, **where: Any
) -> tuple[web.AppRunner, HardenedSite]:
    """Sets `app` up and starts serving it on a `HardenedSite` (`host`/`port` or `sock`,
    and `backlog`); `shutdown_timeout` bounds how long stopping waits for handlers."""
    check_aiohttp()
    options = handler_options(limits)
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout, **options)
    await runner.setup()
    site = HardenedSite(runner, ConnectionGate(connection_cap(limits)), options, **where)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site


def serve(
    program: str,
    app: web.Application,
    host: str,
    port: int,
    limits: HttpLimits,
    **options: Any,
) -> None:
    """Runs `app` until SIGINT/SIGTERM; logs one `serving` line once it listens. `options`:
    `backlog` and `shutdown_timeout` (see `start_site`)."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_exception_handler)
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        runner, _site = await start_site(app, limits, host=host, port=port, **options)
        try:
            logging.getLogger(program).info("serving", extra={"url": f"http://{host}:{port}"})
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(run())
