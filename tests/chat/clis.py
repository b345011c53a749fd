"""Running `chat-client` as a user would: a real process, lines to its stdin, its stdout
read with deadlines."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import pytest
from aiohttp.test_utils import TestServer

from tests.chat.helpers import Client
from tests.faults import LinkProxy

# A fresh interpreter importing aiohttp on a loaded CI machine can take seconds to say hello.
DEADLINE = 15.0
REPO = Path(__file__).resolve().parents[2]
CLOCK = r"\[\d\d:\d\d:\d\d\]"


def ws_url(chat: Client) -> str:
    return str(chat.make_url("/ws").with_scheme("ws"))


def auth_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


class Cli:
    """One running chat-client: lines go to its stdin, its stdout is read with deadlines."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seen: list[str] = []  # every stdout line read so far, for failure messages

    async def type(self, *lines: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("".join(f"{line}\n" for line in lines).encode())
        await self.process.stdin.drain()

    def end_input(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()

    async def expect(self, pattern: str, deadline: float = DEADLINE) -> str:
        """Reads stdout until a line matches `pattern` entirely."""
        assert self.process.stdout is not None
        async with asyncio.timeout(deadline):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    assert self.process.stderr is not None
                    err = (await self.process.stderr.read()).decode()
                    raise AssertionError(
                        f"stdout ended before {pattern!r}; saw {self.seen}; stderr: {err}"
                    )
                line = raw.decode().rstrip("\n")
                self.seen.append(line)
                if re.fullmatch(pattern, line):
                    return line

    async def result(self) -> tuple[int, str, str]:
        """Waits for the exit; returns the status and the rest of stdout and all of stderr."""
        out, err = await asyncio.wait_for(self.process.communicate(), DEADLINE)
        assert self.process.returncode is not None
        return self.process.returncode, out.decode(), err.decode()


CliFactory = Callable[..., Awaitable[Cli]]


@pytest.fixture
async def chat_client() -> AsyncIterator[CliFactory]:
    """Starts `python -m chat_client` with arguments and extra environment; every process is
    killed and reaped at teardown, whatever the test did."""
    started: list[asyncio.subprocess.Process] = []

    async def start(
        *args: str, env: dict[str, str] | None = None, stdin: IO[Any] | int | None = None
    ) -> Cli:
        environ = {k: v for k, v in os.environ.items() if k not in ("CHAT_TOKEN", "CHAT_PASSWORD")}
        environ.update(env or {})
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chat_client",
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is None else stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environ,
            cwd=REPO,
        )
        started.append(process)
        return Cli(process)

    try:
        yield start
    finally:
        for process in started:
            if process.returncode is None:
                process.kill()
        for process in started:
            try:
                # Reading the pipes to their end is what lets their transports close.
                await asyncio.wait_for(process.communicate(), DEADLINE)
            except RuntimeError:  # pytest-timeout interrupted a read, which is still pending
                await asyncio.wait_for(process.wait(), DEADLINE)


@pytest.fixture
async def proxies() -> AsyncIterator[list[LinkProxy]]:
    made: list[LinkProxy] = []
    yield made
    for proxy in made:
        await proxy.close()


async def proxy_to(chat: Client, proxies: list[LinkProxy]) -> tuple[LinkProxy, str]:
    """A TCP proxy in front of a chat instance (to drop its sockets), and its /ws URL."""
    assert chat.server.port is not None
    proxy = LinkProxy(chat.server.port)
    await proxy.start()
    proxies.append(proxy)
    return proxy, f"ws://127.0.0.1:{proxy.port}/ws"
