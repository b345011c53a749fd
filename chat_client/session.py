"""One connection of `chat-client` to `/ws`: it joins (or resumes) the conversation's rooms,
sends what the user types, keeps the socket's token fresh and prints what arrives, until the
server closes or stdin ends."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from chat_client import incoming
from chat_client.api import RoomsApi
from chat_client.console import CLOSE_TIMEOUT, Console, printable
from chat_client.conversation import Conversation
from chat_client.incoming import RETRY_FOR, TRANSIENT, InFlight
from chat_client.runner import Ending, Runner
from chat_client.tokens import Refused, Tokens
from common.backoff import Backoff

HELLO_TIMEOUT = 10.0
ANSWER_TIMEOUT = 5.0  # for the answer (ack, joined, left or an error) to each frame we send
MIN_GAP, MAX_GAP = 0.05, 2.0  # seconds between frames while the server asks us to slow down
REFRESH_RETRY = 5.0  # seconds between attempts to refresh while the auth service is down
ABNORMAL_CLOSURE = 1006


class NoAnswer(Exception):
    """The server neither answered nor refused a frame in time."""


class Session:
    """Frames are sent one at a time, each waiting for its answer. That is how the end of
    stdin knows everything was delivered, and how a `rate_limited` error, which carries no
    `ref`, is known to be about the frame in flight: the client slows down and resends it
    rather than pile up strikes until the server closes the connection with 1008."""

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        conversation: Conversation,
        tokens: Tokens,
        console: Console,
        api: RoomsApi,
        *,
        answer_timeout: float = ANSWER_TIMEOUT,
    ) -> None:
        self._ws = ws
        self._conversation = conversation
        self._tokens = tokens
        self._console = console
        self._answer_timeout = answer_timeout
        self._refs = itertools.count(1)
        self._inflight: InFlight | None = None
        self._gap = 0.0
        self._last_send = 0.0
        self._runner = Runner(self._request, conversation, console, api)

    @property
    def established(self) -> bool:
        """The hello arrived and the rooms were joined."""
        return self._runner.established

    async def run(self) -> Ending:
        ending = await self._hello()
        if ending is not None:
            return ending
        receiver = asyncio.create_task(self._receive())
        worker = asyncio.create_task(self._runner.run())
        tasks: tuple[asyncio.Task[Any], ...] = (
            receiver,
            worker,
            asyncio.create_task(self._fresh()),
        )
        try:
            await asyncio.wait((receiver, worker), return_when=asyncio.FIRST_COMPLETED)
            if worker.done() and worker.exception() is None:
                await self._ws.close(code=1000)
                return worker.result()
            if worker.done() and isinstance(worker.exception(), NoAnswer):
                self._console.say(f"* no answer from the server within {self._answer_timeout:g} s")
                await self._ws.close(code=1000)
                return Ending(ABNORMAL_CLOSURE, "no answer")
            worker.cancel()  # the server closed (a send may have failed under it): say how
            try:
                return self._closed(*await asyncio.wait_for(receiver, CLOSE_TIMEOUT))
            except TimeoutError:
                return self._closed(self._ws.close_code, "")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _hello(self) -> Ending | None:
        try:
            message = await self._ws.receive(timeout=HELLO_TIMEOUT)
        except TimeoutError:
            self._console.warn("the server sent no hello frame")
            return Ending(ABNORMAL_CLOSURE, "no hello")
        if message.type is WSMsgType.TEXT:
            with contextlib.suppress(ValueError):
                frame = json.loads(message.data)
                if isinstance(frame, dict) and frame.get("type") == "hello":
                    incoming.hello(self._conversation, frame)
                    return None
            self._console.warn("the server did not start with a hello frame")
            return Ending(ABNORMAL_CLOSURE, "no hello", fatal=True)
        if message.type is WSMsgType.CLOSE:
            return self._closed(message.data, message.extra)
        return self._closed(self._ws.close_code, "")

    def _closed(self, code: int | None, reason: str | None) -> Ending:
        code = ABNORMAL_CLOSURE if code is None else code
        if code == ABNORMAL_CLOSURE and not reason:  # no close frame: the link just went
            self._console.say(f"* connection lost ({code})")
        else:
            self._console.say(printable(f"* connection closed: {code} {reason or ''}".rstrip()))
        return Ending(code, reason or "")

    async def _receive(self) -> tuple[int | None, str]:
        """Handles frames until the socket closes; returns the close code and reason."""
        while True:
            message = await self._ws.receive()
            if message.type is WSMsgType.TEXT:
                self._handle(message.data)
                await self._console.drain()
            elif message.type is WSMsgType.CLOSE:
                return message.data, message.extra or ""
            elif message.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return self._ws.close_code, ""

    def _handle(self, data: str) -> None:
        try:
            frame = json.loads(data)
        except ValueError:
            return
        if not isinstance(frame, dict):
            return
        kind, inflight = frame.get("type"), self._inflight
        unaddressed = kind == "error" and frame.get("ref") is None
        if unaddressed and frame.get("code") in TRANSIENT and inflight is not None:
            self._answer(inflight.ref, frame)  # it can only be about the frame in flight
            return
        line = incoming.line(self._conversation, frame, inflight)
        if line is not None:
            self._console.say(line)
        if frame.get("ref") is not None:
            self._answer(frame["ref"], frame)

    def _answer(self, ref: object, frame: dict[str, Any]) -> None:
        inflight = self._inflight
        if inflight is not None and inflight.ref == ref and not inflight.answer.done():
            inflight.answer.set_result(frame)

    async def _request(self, frame: dict[str, Any], *, rejoin: bool = False) -> bool:
        """Sends `frame` and waits for its answer; True when the server accepted it."""
        ref = next(self._refs)
        frame = {**frame, "ref": ref}
        deadline = time.monotonic() + RETRY_FOR
        backoff = Backoff(base=MIN_GAP, cap=MAX_GAP)  # while the server is unavailable
        attempt = 0
        while True:
            await self._pace()
            request = InFlight(
                ref, frame, rejoin, asyncio.get_running_loop().create_future(), attempt
            )
            self._inflight = request
            try:
                await self._ws.send_str(json.dumps(frame, ensure_ascii=False))
                self._last_send = time.monotonic()
                answer = await asyncio.wait_for(request.answer, self._answer_timeout)
            except TimeoutError:
                raise NoAnswer from None
            finally:
                self._inflight = None
            code = answer.get("code")
            if not (answer.get("type") == "error" and code in TRANSIENT):
                self._gap *= 0.9
                return answer.get("type") != "error"
            attempt += 1
            if time.monotonic() >= deadline:
                self._console.say(f"! error {code}: refused for {RETRY_FOR:.0f} s; given up")
                return False
            if code == "rate_limited":  # the server asks every frame to slow down
                self._gap = min(max(self._gap * 2, MIN_GAP), MAX_GAP)
            else:  # it cannot store this one right now: wait, then send it again
                await asyncio.sleep(backoff.next())

    async def _pace(self) -> None:
        wait = self._last_send + self._gap - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _fresh(self) -> None:
        """Refreshes the token when it is due and hands the new one to the socket (its
        `refreshed` answer is printed; a refusal arrives as an error frame)."""
        while (due := self._tokens.refresh_in()) is not None:
            await asyncio.sleep(due)
            try:
                token = await self._tokens.refresh()
            except Refused as refused:
                self._console.warn(f"cannot refresh the token: {refused.explain()}")
                if not refused.transient:
                    return  # the server closes with 4001 at expiry; reconnecting logs in
                await asyncio.sleep(REFRESH_RETRY)
                continue
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                self._console.warn(f"cannot refresh the token: {printable(exc) or 'no answer'}")
                await asyncio.sleep(REFRESH_RETRY)
                continue
            frame = {"op": "refresh", "token": token, "ref": next(self._refs)}
            await self._ws.send_str(json.dumps(frame))
