"""Test servers that serve an app exactly as production does: `common.http_server`'s site
(connection cap, header deadline, the hardened request handler), not aiohttp's plain one."""

from __future__ import annotations

import socket
from typing import Any

from aiohttp import web
from aiohttp.test_utils import BaseTestServer, get_port_socket
from yarl import URL

from common.http_limits import HttpLimits
from common.http_server import HardenedSite, start_site


class HardenedTestServer(BaseTestServer):
    """A `BaseTestServer` (usable with `aiohttp_client` and `aiohttp_server`) on a free port."""

    def __init__(self, app: web.Application, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self._limits = limits
        self.site: HardenedSite | None = None

    async def start_server(self, loop: Any = None, **kwargs: Any) -> None:
        if self.runner:
            return
        sock = get_port_socket(self.host, 0, socket.AF_INET)
        self.runner, self.site = await start_site(self.app, self._limits, sock=sock)
        self.port = sock.getsockname()[1]
        self.scheme = "http"
        self._root = URL(f"http://{self.host}:{self.port}")

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        raise NotImplementedError("start_server builds the runner")
