"""The clients of a chaos run: readers that check every offset of their room, publishers that
send at a steady rate with idempotency keys. Both reconnect to a random instance after any
drop; a reader then joins with `since`, a publisher resends what was not acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from chaos.stall import stall

RECONNECT_DELAY = (0.05, 0.3)  # seconds, jittered: a storm of readers does not sync up
ANSWER_TIMEOUT = 5.0
RETRY_DELAY = 0.1  # after `unavailable` (Redis restarting)
STALL_CHECK = 0.5  # seconds: how often a reader waiting for frames looks at its schedule


@dataclass
class Reader:
    """One member of one room, recording everything the room tells it."""

    name: str
    token: str = field(repr=False)
    room: str
    urls: list[str]
    # (monotonic start, seconds at most, instance) of not reading; then how long it took
    # the server to close the socket (None: it did not)
    stall: tuple[float, float, str] | None = None
    dropped_after: float | None = None
    stalls: bool = False  # whether it was one of the stalling readers
    changed: asyncio.Event | None = None  # set whenever it records something
    start: int | None = None  # the room's offset at the first join: what follows is expected
    epoch: str | None = None
    last: int | None = None
    received: list[tuple[int, str]] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    odd_gaps: int = 0  # resets, or gaps without a range: never expected here
    closes: Counter[int] = field(default_factory=Counter)
    reconnects: int = 0

    def __post_init__(self) -> None:
        self.stalls = self.stall is not None

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            while not stop.is_set():
                if self._stall_due():
                    await self._stall()
                try:
                    ws = await session.ws_connect(
                        random.choice(self.urls),
                        headers={"Authorization": f"Bearer {self.token}"},
                        timeout=aiohttp.ClientWSTimeout(ws_close=2),
                    )
                except (aiohttp.ClientError, OSError, TimeoutError):
                    await asyncio.sleep(random.uniform(*RECONNECT_DELAY))
                    continue
                async with ws:
                    code = await self._listen(ws, stop)
                if code is not None:
                    self.closes[code] += 1
                self.reconnects += 1
                await asyncio.sleep(random.uniform(*RECONNECT_DELAY))

    async def _listen(self, ws: aiohttp.ClientWebSocketResponse, stop: asyncio.Event) -> int | None:
        await self._join(ws)
        while not stop.is_set() and not self._stall_due():
            try:
                message = await ws.receive(timeout=STALL_CHECK)
            except TimeoutError:
                continue
            if message.type is WSMsgType.TEXT:
                frame = json.loads(message.data)
                if frame.get("type") == "error" and frame.get("code") == "unavailable":
                    await asyncio.sleep(RETRY_DELAY)
                    await self._join(ws)  # the join met a Redis restart: again
                else:
                    self._record(frame)
            elif message.type is WSMsgType.CLOSE:
                return int(message.data)
            elif message.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return ws.close_code or 1006
        return None

    def _stall_due(self) -> bool:
        return self.stall is not None and time.monotonic() >= self.stall[0]

    async def _stall(self) -> None:
        """The fault: this reader goes on (on a socket of its own) without reading, until
        the server closes it as a slow consumer; then it reads what was left and resumes."""
        assert self.stall is not None
        _, give_up, url = self.stall
        self.stall = None
        frames, self.dropped_after = await stall(url, self.token, self._join_frame(), give_up)
        for frame in frames:
            if frame.get("type") != "close":
                self._record(frame)
        self.reconnects += 1

    def _join_frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"op": "join", "room": self.room}
        if self.epoch is not None and self.last is not None:
            frame["since"] = {"offset": self.last, "epoch": self.epoch}
        return frame

    async def _join(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        with contextlib.suppress(ConnectionError):
            await ws.send_str(json.dumps(self._join_frame()))

    def _record(self, frame: dict[str, Any]) -> None:
        if self.changed is not None:
            self.changed.set()
        kind = frame.get("type")
        if kind == "message":
            offset = frame["offset"]
            self.received.append((offset, frame["text"]))
            self.last = offset if self.last is None else max(self.last, offset)
        elif kind == "joined":
            if self.start is None:
                self.start = self.last = frame["offset"]
            elif frame["epoch"] != self.epoch:
                self.odd_gaps += 1
            self.epoch = frame["epoch"]
        elif kind == "gap":
            if "from" in frame:
                self.gaps.append((frame["from"], frame["to"]))
                self.last = max(self.last or 0, frame["to"])
            else:
                self.odd_gaps += 1

    def caught_up(self, final: int) -> bool:
        return self.last is not None and self.last >= final


@dataclass
class Publisher:
    """Sends to its rooms in turn at `rate` messages a second; each message is acknowledged
    (with its offset) before the next is sent, resent with the same key until it is."""

    name: str
    token: str = field(repr=False)
    rooms: list[str]
    urls: list[str]
    rate: float
    text_size: int
    acked: dict[tuple[str, int], str] = field(default_factory=dict)  # (room, offset) -> text
    resent: int = 0
    sent: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as session:
            ws: aiohttp.ClientWebSocketResponse | None = None
            pending: tuple[str, str, str] | None = None
            due = time.monotonic()
            while pending is not None or not stop.is_set():
                if pending is None:
                    due = max(due + 1 / self.rate, time.monotonic() - 1)
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    room = self.rooms[self.sent % len(self.rooms)]
                    key = f"{self.name}-{self.sent}"
                    pending = (room, key, f"{key} ".ljust(self.text_size, "x"))
                    self.sent += 1
                if ws is None or ws.closed:
                    ws = await self._connect(session)
                    if ws is None:
                        continue
                if await self._send(ws, *pending):
                    pending = None
                else:
                    self.resent += 1
            if ws is not None:
                await ws.close()

    async def _connect(
        self, session: aiohttp.ClientSession
    ) -> aiohttp.ClientWebSocketResponse | None:
        try:
            ws = await session.ws_connect(
                random.choice(self.urls), headers={"Authorization": f"Bearer {self.token}"}
            )
            for room in self.rooms:
                await ws.send_str(json.dumps({"op": "join", "room": room, "ref": room}))
                if (await self._answer(ws, room)).get("type") != "joined":
                    await ws.close()
                    raise ConnectionError("join refused")
        except (aiohttp.ClientError, OSError, TimeoutError):
            await asyncio.sleep(random.uniform(*RECONNECT_DELAY))
            return None
        return ws

    async def _send(
        self, ws: aiohttp.ClientWebSocketResponse, room: str, key: str, text: str
    ) -> bool:
        frame = {"op": "send", "room": room, "text": text, "idempotency_key": key, "ref": key}
        try:
            await ws.send_str(json.dumps(frame))
            answer = await self._answer(ws, key)
        except (aiohttp.ClientError, OSError, TimeoutError):
            await ws.close()
            return False
        if answer.get("type") != "ack":
            await asyncio.sleep(RETRY_DELAY)
            return False
        self.acked[(room, answer["offset"])] = text
        return True

    async def _answer(self, ws: aiohttp.ClientWebSocketResponse, ref: str) -> dict[str, Any]:
        """Reads (and drops: publishers are members too) frames until the one for `ref`."""
        async with asyncio.timeout(ANSWER_TIMEOUT):
            while True:
                message = await ws.receive()
                if message.type is not WSMsgType.TEXT:
                    raise ConnectionError("closed")
                frame: dict[str, Any] = json.loads(message.data)
                if frame.get("ref") == ref:
                    return frame
