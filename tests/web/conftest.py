"""The web client's stack for a real browser: the auth service and two chat instances as
processes of their own (so a test can kill one and start it again on its port) on the
suite's Redis, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    async_playwright,
    expect,
)

from tests.conftest import CHAT_CLIENT, auth_environ
from tests.processes import ServiceProcess, start_service
from tests.redis_server import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
READY_DEADLINE = 30.0
# Generous: two cores are shared with everything else the suite runs.
UI_DEADLINE_MS = 20_000
expect.set_options(timeout=UI_DEADLINE_MS)


@dataclass
class Service:
    """One service process on a fixed port; `kill()` and `start()` keep the port."""

    name: str
    module: str
    port: int
    env: dict[str, str]
    logs: Path
    process: ServiceProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.process = start_service(self.name, self.module, self.port, self.env, self.logs)
        await _until_healthy(self.process)

    async def kill(self) -> None:
        """SIGKILL: no goodbye to its sockets, as when a machine dies."""
        assert self.process is not None
        self.process.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.process.process.wait)
        self.process.stop()  # closes its log

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


async def _until_healthy(service: ServiceProcess) -> None:
    """Polls /healthz of a process just started: there is no event to wait on."""
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(READY_DEADLINE):
            while True:
                if service.process.poll() is not None:
                    raise RuntimeError(f"{service.name} exited:\n{service.log_tail()}")
                try:
                    async with session.get(f"{service.url}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)


@dataclass
class WebStack:
    """The auth service, chat instances `one` and `two`, and a browser to open pages with."""

    auth: Service
    one: Service
    two: Service
    browser: Browser
    contexts: list[BrowserContext] = field(default_factory=list)
    # Uncaught script errors and Content-Security-Policy violations: none is expected. (A
    # socket or a request refused while an instance is down is an expected console error.)
    faults: list[str] = field(default_factory=list)

    async def page(self, chat: Service, *, width: int = 1280, height: int = 800) -> Page:
        """A new browser context (its own storage, as another person's browser) on `chat`."""
        context = await self.browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(UI_DEADLINE_MS)
        self.contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", self._script_error)
        page.on("console", self._console)
        await page.goto(f"{chat.url}/")
        return page

    def _script_error(self, error: Error) -> None:
        self.faults.append(f"script error: {error}")

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.faults.append(f"CSP: {message.text}")

    async def server_token(self) -> str:
        """A `chat:server` token of the chat service's client, for setting a scene over the API."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{self.auth.url}/token",
                data={"grant_type": "client_credentials", "scope": "chat:server"},
                headers={"Authorization": aiohttp.encode_basic_auth(*CHAT_CLIENT)},
            ) as response,
        ):
            assert response.status == 200, await response.text()
            return str((await response.json())["access_token"])


StackFactory = Callable[..., Awaitable[WebStack]]


def require_chromium(path: Path = CHROMIUM) -> Path:
    """The browser, or a failure (never a skip) that says how to install it."""
    if not path.exists():
        pytest.fail(
            f"{path} is missing: the web client's tests drive Debian's Chromium. "
            "Install it with `apt-get install chromium` (never `playwright install`)."
        )
    return path


@pytest.fixture
def chromium() -> Path:
    return require_chromium()


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


@pytest.fixture
async def web_stack(
    redis_url: str, browser: Browser, tmp_path: Path
) -> AsyncIterator[StackFactory]:
    """Starts the stack; other keyword arguments are extra settings of the auth service."""
    started: list[WebStack] = []

    async def make(
        *, failover: bool = False, chat: dict[str, str] | None = None, **auth_overrides: str
    ) -> WebStack:
        """`failover`: each instance's page may move its socket to the other instance;
        `chat`: extra settings of both chat instances."""
        ports = free_port(), free_port(), free_port()
        origins = ",".join(f"http://127.0.0.1:{port}" for port in ports[1:])
        sockets = ",".join(f"ws://127.0.0.1:{port}/ws" for port in ports[1:])
        auth = Service(
            "auth",
            "auth_service",
            ports[0],
            auth_environ(
                redis_url,
                AUTH_PORT=str(ports[0]),
                AUTH_ALLOWED_ORIGINS=origins,
                **auth_overrides,
            ),
            tmp_path,
        )
        instances = [
            Service(
                f"chat{n}",
                "service",
                port,
                {
                    "REDIS_URL": redis_url,
                    "AUTH_URL": auth.url,
                    "CHAT_PORT": str(port),
                    "CHAT_CLIENT_ID": CHAT_CLIENT[0],
                    "CHAT_CLIENT_SECRET": CHAT_CLIENT[1],
                    "CHAT_ALLOWED_ORIGINS": origins,
                    "CHAT_CLOSE_TIMEOUT": "1",
                    "CHAT_PRESENCE_GRACE": "0.5",
                    "CHAT_INSTANCE_ID": f"web{n}",
                    **({"CHAT_WEB_SOCKET_URLS": sockets} if failover else {}),
                    **(chat or {}),
                },
                tmp_path,
            )
            for n, port in enumerate(ports[1:], start=1)
        ]
        stack = WebStack(auth, instances[0], instances[1], browser)
        started.append(stack)
        await auth.start()
        await asyncio.gather(*(instance.start() for instance in instances))
        return stack

    yield make
    for stack in started:
        for context in stack.contexts:
            await context.close()
        for service in (stack.one, stack.two, stack.auth):
            service.stop()
    faults = [fault for stack in started for fault in stack.faults]
    assert not faults, f"the pages reported: {faults}"
