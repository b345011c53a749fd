"""A service served for real on 127.0.0.1 (a free port) from a thread with its own event
loop: for synchronous clients such as schemathesis' pytest integration, which make real
HTTP calls and cannot share the test's loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from aiohttp import web

from common.http_limits import HttpLimits
from common.http_server import start_site


class LiveApp:
    """Serves `make_app()` (built inside the service's own loop) until `stop`."""

    def __init__(
        self, make_app: Callable[[], web.Application], http: HttpLimits, *, name: str
    ) -> None:
        self._make_app = make_app
        self._http = http
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.run_until_complete(self._loop.shutdown_default_executor())
        self._loop.close()

    async def _start(self) -> str:
        self._runner, _site = await start_site(
            self._make_app(), self._http, shutdown_timeout=1, host="127.0.0.1", port=0
        )
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()
        try:
            self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        try:
            if self._runner is not None:
                cleanup = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
                cleanup.result(20)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
