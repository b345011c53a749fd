"""How both services serve HTTP: aiohttp behind a connection cap, with bounded slow clients.

`serve()` replaces `web.run_app`. It runs the application on a `HardenedSite`:
- every connection passes a `ConnectionGate` (`common/connection_gate.py`): past
  `max_open_connections` a new connection is answered 503, past `max_connections_per_address`
  from its address 429, and closed at once, so a flood of idle or slow connections cannot
  exhaust the process's file descriptors and leave `accept()` failing for everyone, and one
  address cannot take every slot;
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
from typing import Any

from aiohttp import web

from common.aiohttp_adapter import HardenedRequestHandler, check_aiohttp
from common.connection_gate import CONNECTION_SCREEN, MAX_LINGERING, ConnectionGate
from common.http_limits import HttpLimits
from common.log_throttle import ConditionLog
from common.logging import AccessLogger

log = logging.getLogger(__name__)

# Descriptors kept beyond the cap for Redis, the HTTP client pool and logs; on top of these,
# one listen backlog (asyncio accepts up to a backlog of sockets before any reaches the gate)
# and the refused connections that may linger.
FD_RESERVE = 256


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


def connection_cap(limits: HttpLimits, *, backlog: int) -> int:
    """The cap to enforce: the configured one, lowered if the descriptor limit cannot fit it
    with its reserve (see `FD_RESERVE`)."""
    reserve = FD_RESERVE + backlog + MAX_LINGERING
    wanted = limits.max_open_connections + reserve
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return limits.max_open_connections
    cap = max(16, soft - reserve)
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
    cap = connection_cap(limits, backlog=where.get("backlog", 128))
    gate = ConnectionGate(cap, limits.max_connections_per_address, app.get(CONNECTION_SCREEN))
    site = HardenedSite(runner, gate, options, **where)
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
