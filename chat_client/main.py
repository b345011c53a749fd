"""`chat-client`'s run: log in, connect, and reconnect after a drop.

After 1001 (an instance going away), 1006 (a connection lost), 1011, 1012 and 1013 (an
instance overloaded, or this client read too slowly), and 4004 (disconnected by the server
API, which allows a reconnect), it reconnects to the next `--url` with
backoff, joins its rooms again with `since` and shows what it missed or exactly what is
lost; after 4001 it refreshes the token first. The first connection is not retried: a wrong
URL, a refused credential or a service that is down is said at once.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import sys
from collections.abc import AsyncIterator, Sequence

import aiohttp

from chat_client.api import RoomsApi
from chat_client.console import (
    CLOSE_TIMEOUT,
    Console,
    blocking_modes_restored,
    reason,
    stdin_lines,
)
from chat_client.conversation import Conversation
from chat_client.options import Options, parse_options
from chat_client.runner import Ending
from chat_client.session import Session
from chat_client.tokens import Refused, Tokens, refuse_http_errors

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130

CONNECT_TIMEOUT = 30.0  # the handshake includes the server's own bounded introspection
HEARTBEAT = 30.0  # notices a server that vanished without closing
RECONNECT = (1001, 1006, 1011, 1012, 1013, 4004)
TOKEN_EXPIRED = 4001
FIRST_DELAY, MAX_DELAY = 0.5, 20.0  # seconds before a reconnect: doubling, with jitter


class _Stop(Exception):
    """The run ends with this exit status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Client:
    def __init__(self, options: Options, console: Console, http: aiohttp.ClientSession) -> None:
        self._options = options
        self._console = console
        self._http = http
        self._tokens = Tokens(http, options.auth_url, options.credential)
        self._urls = itertools.cycle(options.urls)
        self._failures = 0  # connections in a row that did not get through their joins

    async def run(self, lines: AsyncIterator[str]) -> int:
        try:
            await self._start()
            conversation = Conversation(self._options.rooms, lines)
            try:
                return await self._chat(conversation)
            finally:
                await conversation.close()
        except _Stop as stop:
            return stop.status

    async def _start(self) -> None:
        try:
            await self._tokens.start()
        except Refused as refused:
            self._console.warn(f"the auth service refused the password grant: {refused.explain()}")
            raise _Stop(EXIT_REFUSED) from None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            where = self._options.auth_url
            self._console.warn(f"cannot get a token from {where}: {reason(exc)}")
            raise _Stop(EXIT_FAILED) from None

    async def _chat(self, conversation: Conversation) -> int:
        url = next(self._urls)
        ws = await self._connect(url, first=True)
        while True:
            async with ws:
                api = RoomsApi(self._http, self._tokens, url)
                session = Session(ws, conversation, self._tokens, self._console, api)
                ending = await session.run()
            self._failures = 0 if session.established else self._failures + 1
            status = await self._after(ending, conversation)
            if status is not None:
                return status
            retry_after: float | None = None
            while True:
                url = next(self._urls)
                if not await self._wait(url, retry_after, conversation):
                    return EXIT_OK
                retry_after = None
                try:
                    ws = await self._connect(url, first=False)
                    break
                except Refused as refused:  # transient: overloaded, or auth down
                    self._failures += 1
                    self._console.say(f"* {url} refused the connection: {refused.explain()}")
                    retry_after = refused.seconds()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self._failures += 1
                    self._console.say(f"* cannot connect to {url}: {reason(exc)}")

    async def _after(self, ending: Ending, conversation: Conversation) -> int | None:
        """The exit status once a connection ended, or None to reconnect."""
        if ending.fatal:
            return EXIT_FAILED
        if ending.code == 1000:
            return EXIT_OK
        if ending.code == TOKEN_EXPIRED and self._tokens.refreshable:
            await self._refresh()
            return None
        if ending.code == TOKEN_EXPIRED:
            self._console.warn("the token expired; log in with --username to stay connected")
            return EXIT_FAILED
        if ending.code in RECONNECT:
            return EXIT_OK if conversation.finished else None
        return EXIT_FAILED

    async def _wait(self, url: str, retry_after: float | None, conversation: Conversation) -> bool:
        """Waits before a reconnect to `url`; False when stdin ended with everything answered
        meanwhile (nothing left to do)."""
        if conversation.finished:
            return False
        delay = min(MAX_DELAY, FIRST_DELAY * 2 ** min(self._failures, 10))
        delay = max(random.uniform(delay / 2, delay), retry_after or 0.0)  # noqa: S311 (jitter)
        self._console.say(f"* reconnecting to {url} in {delay:.1f} s")
        ended = asyncio.create_task(conversation.wait_finished())
        try:
            await asyncio.wait((ended,), timeout=delay)
        finally:
            ended.cancel()
        return not conversation.finished

    async def _connect(self, url: str, *, first: bool) -> aiohttp.ClientWebSocketResponse:
        """An open socket. On the first connection every failure stops the run; later ones
        raise what is worth retrying (`Refused` when transient, network errors)."""
        for attempt in range(2):
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    return await self._http.ws_connect(
                        url,
                        headers={"Authorization": f"Bearer {self._tokens.access}"},
                        heartbeat=HEARTBEAT,
                        timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT),
                    )
            except Refused as refused:
                if refused.status == 401 and attempt == 0 and self._tokens.refreshable:
                    await self._refresh()  # it expired while we were away: once more
                    continue
                if refused.transient and not first:
                    raise
                self._console.warn(f"the chat service refused the connection: {refused.explain()}")
            except aiohttp.WSServerHandshakeError as exc:
                self._console.warn(
                    f"the chat service refused the connection: {exc.status} {exc.message}"
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                if not first:
                    raise
                self._console.warn(f"cannot connect to {url}: {reason(exc)}")
                raise _Stop(EXIT_FAILED) from None
            raise _Stop(EXIT_REFUSED)
        raise _Stop(EXIT_REFUSED)

    async def _refresh(self) -> None:
        """A fresh token before reconnecting; stops the run when the credential is refused
        (while the auth service is down, the next connection tries again)."""
        try:
            await self._tokens.refresh()
        except Refused as refused:
            self._console.warn(f"cannot refresh the token: {refused.explain()}")
            if not refused.transient:
                raise _Stop(EXIT_REFUSED) from None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self._console.warn(f"cannot refresh the token: {reason(exc)}")


async def run(options: Options, console: Console) -> int:
    """One run from credential to exit; returns the exit status."""
    async with aiohttp.ClientSession(raise_for_status=refuse_http_errors) as http:
        lines = stdin_lines(console)
        try:
            return await Client(options, console, http).run(lines)
        finally:
            await lines.aclose()


async def _main(options: Options) -> int:
    console = Console(sys.stdout, sys.stderr)
    with blocking_modes_restored():
        await console.open()
        try:
            return await run(options, console)
        finally:
            await console.close()


def main(argv: Sequence[str] | None = None) -> None:
    try:
        options = parse_options(argv, os.environ)
        status = asyncio.run(_main(options))
    except KeyboardInterrupt:
        status = EXIT_INTERRUPTED
    raise SystemExit(status)
