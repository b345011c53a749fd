"""Bench clients in Python: the publisher, the idle connections and the probe's sockets.

A client connects, waits for its hello, joins rooms and sends with acknowledgements; a reader
task matches acknowledgements to their sends and ignores room messages (the subscribers that
are measured are bench/loadgen's). The socket.io client speaks Engine.IO 4 framing directly.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import aiohttp


class BenchClient:
    """One connection of the load generator to a system under test."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self._session = session
        self._url = url
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._waiters: dict[str, asyncio.Future[Any]] = {}
        self._refs = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self._pong: asyncio.Future[None] | None = None

    async def connect(self, headers: dict[str, str] | None = None) -> None:
        """Opens the socket and waits for the hello."""
        self._ws = await self._session.ws_connect(
            self._url, headers=headers or {}, autoping=True, max_msg_size=0
        )
        await self._handshake(self._ws)
        self._reader = asyncio.create_task(self._read())

    async def _handshake(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        hello = json.loads(await ws.receive_str())
        if hello.get("type") != "hello":
            raise RuntimeError(f"expected hello, got {hello}")

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self._frame(message.data)
        finally:
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("closed"))

    def _frame(self, data: str) -> None:
        frame = json.loads(data)
        kind = frame.get("type")
        if kind in ("ack", "joined"):
            key = str(frame.get("ref")) if kind == "ack" else f"join:{frame['room']}"
            waiter = self._waiters.pop(key, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(frame)
        elif kind == "error":
            key = str(frame.get("ref"))
            waiter = self._waiters.pop(key, None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(RuntimeError(f"error frame: {frame}"))

    def _expect(self, key: str) -> asyncio.Future[Any]:
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[key] = waiter
        return waiter

    async def join(self, room: str) -> None:
        assert self._ws is not None
        joined = self._expect(f"join:{room}")
        await self._ws.send_str(json.dumps({"op": "join", "room": room}))
        await joined

    async def send(self, room: str, text: str) -> asyncio.Future[Any]:
        """Sends; returns a future for the acknowledgement."""
        assert self._ws is not None
        ref = str(next(self._refs))
        acked = self._expect(ref)
        await self._ws.send_str(json.dumps({"op": "send", "room": room, "text": text, "ref": ref}))
        return acked

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()


class SocketIOClient(BenchClient):
    """Socket.IO over Engine.IO 4 on one WebSocket: `40` connects the default namespace,
    `42[event, data]` is an event, `42<id>[...]` asks for an ack that comes as `43<id>[...]`,
    and the server's `2` pings are answered `3`."""

    async def _handshake(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        opening = await ws.receive_str()
        if not opening.startswith("0"):
            raise RuntimeError(f"expected an Engine.IO open packet, got {opening[:40]}")
        await ws.send_str("40")
        while True:
            packet = await ws.receive_str()
            if packet.startswith("42"):
                event = json.loads(packet[2:])
                if event[0] == "hello":
                    return
            elif packet == "2":
                await ws.send_str("3")

    def _frame(self, data: str) -> None:
        if data == "2":
            assert self._ws is not None
            self._pong = asyncio.ensure_future(self._ws.send_str("3"))  # kept: tasks need a ref
            return
        if data.startswith("43"):
            digits = len(data) - len(data[2:].lstrip("0123456789"))
            key = data[2:digits]
            waiter = self._waiters.pop(key, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(json.loads(data[digits:])[0])

    async def join(self, room: str) -> None:
        assert self._ws is not None
        ref = str(next(self._refs))
        joined = self._expect(ref)
        await self._ws.send_str(f'42{ref}["join",{json.dumps({"room": room})}]')
        await joined

    async def send(self, room: str, text: str) -> asyncio.Future[Any]:
        assert self._ws is not None
        ref = str(next(self._refs))
        acked = self._expect(ref)
        data = json.dumps({"room": room, "text": text, "ref": ref})
        await self._ws.send_str(f'42{ref}["send",{data}]')
        return acked
