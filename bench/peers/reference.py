"""The bare reference peer: plain aiohttp on Redis pub/sub, no auth, nothing beyond the protocol.

It is the most this machine can show for the bench protocol, so every per-message cost that
the protocol does not force is left out. Each room is one Redis channel, subscribed by a process
while it has local members; one reader task per process forwards every published message to
the room's local members. A broadcast is encoded once, by the publishing process: subscribers
pass the bytes they receive to each member's socket unchanged.

Run: `PORT=8101 REDIS_URL=redis://127.0.0.1:6379/0 python -m bench.peers.reference`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from aiohttp import WSCloseCode, WSMsgType, web

from bench.peers.environment import listen_port, redis_url

log = logging.getLogger("bench.peers.reference")

CHANNEL_PREFIX = b"ref:room:"
# Subscribed at start-up and never published to: it keeps the subscriber connection in
# subscribed mode before the first room is joined, so the reader has something to block on.
IDLE_CHANNEL = b"ref:idle"

HELLO = '{"type":"hello"}'
PONG = '{"type":"pong"}'
_compact = json.JSONEncoder(separators=(",", ":")).encode


class BadFrame(Exception):
    """A client frame the protocol does not define."""


class RoomFanout:
    """This process's side of the rooms: which local sockets are in which room, one Redis
    subscription per room while it has local members, and the reader that forwards each
    published message to them."""

    def __init__(self, url: str) -> None:
        self._publisher = aioredis.Redis.from_url(url)
        self._subscriber = aioredis.Redis.from_url(url)
        self._pubsub = self._subscriber.pubsub()
        # Keyed by Redis channel, so the reader looks members up with the bytes it receives.
        self._members: dict[bytes, set[web.WebSocketResponse]] = {}
        # SUBSCRIBE confirmations still owed, in the order the commands were sent. A join is
        # answered only once Redis confirms, so a message published after "joined" is received.
        self._owed: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._ready: dict[bytes, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)

    async def start(self) -> None:
        await self._pubsub.subscribe(IDLE_CHANNEL)
        self._reader = asyncio.create_task(self._read_forever(), name="reference-reader")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._pubsub.aclose()
        await self._subscriber.aclose()
        await self._publisher.aclose()

    async def join(self, channel: bytes, ws: web.WebSocketResponse) -> None:
        """Adds `ws` to the room; returns once this process is subscribed to it."""
        members = self._members.get(channel)
        if members is None:
            self._members[channel] = {ws}
            ready = asyncio.get_running_loop().create_future()
            self._ready[channel] = ready
            self._owed.setdefault(channel, deque()).append(ready)
            await self._pubsub.subscribe(channel)
        else:
            members.add(ws)
            ready = self._ready[channel]
        # Shielded: other joiners of the same room wait on this future too.
        await asyncio.shield(ready)

    async def leave(self, channel: bytes, ws: web.WebSocketResponse) -> None:
        members = self._members.get(channel)
        if members is None:
            return
        members.discard(ws)
        if not members:
            # Membership is updated before the first await, so even a cancelled leave
            # leaves no dead socket behind; at worst an idle subscription.
            del self._members[channel]
            del self._ready[channel]
            await self._pubsub.unsubscribe(channel)

    async def publish(self, room: str, text: str) -> str:
        """Publishes one message to every member of `room` in every process; returns its id."""
        message_id = f"{self._prefix}-{next(self._ids)}"
        payload = _compact(
            {"type": "message", "room": room, "id": message_id, "text": text, "ts": time.time()}
        )
        await self._publisher.publish(CHANNEL_PREFIX + room.encode(), payload)
        return message_id

    async def _read_forever(self) -> None:
        delay = 0.1
        while True:
            try:
                await self._forward()
            except Exception:
                log.exception("the Redis subscriber failed; retrying in %.1fs", delay)
                for owed in self._owed.values():
                    for ready in owed:
                        if not ready.done():
                            ready.set_exception(ConnectionError("Redis subscriber failed"))
                self._owed.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _forward(self) -> None:
        pubsub = self._pubsub
        members = self._members
        text = WSMsgType.TEXT
        while True:
            # `parse_response` rather than `get_message`: a published message is forwarded
            # straight from the raw reply, without the dict and bookkeeping built per message.
            response = await pubsub.parse_response(block=True)
            if response is None:
                continue
            if response[0] == b"message":
                sockets = members.get(response[1])
                if not sockets:
                    continue
                frame = response[2]
                # A copy: a send that has to wait for a slow socket lets joins and leaves run.
                for ws in tuple(sockets):
                    try:  # noqa: SIM105 (contextlib.suppress costs an object per recipient)
                        await ws.send_frame(frame, text)
                    except ConnectionError:
                        pass  # closing; its handler removes it from the room
                continue
            if response[0] == b"subscribe":
                owed = self._owed.get(response[1])
                if owed:
                    ready = owed.popleft()
                    if not ready.done():
                        ready.set_result(None)
                    if not owed:
                        del self._owed[response[1]]
            # Lets redis-py keep its record of subscribed channels, used when it reconnects.
            await pubsub.handle_message(response)


FANOUT = web.AppKey("fanout", RoomFanout)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """One client connection: answers its frames until it closes."""
    fanout = request.app[FANOUT]
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    await ws.send_str(HELLO)
    joined: set[bytes] = set()
    try:
        async for msg in ws:
            try:
                if msg.type is not WSMsgType.TEXT:
                    raise BadFrame
                await _answer(fanout, ws, joined, json.loads(msg.data))
            except (BadFrame, ValueError, KeyError, TypeError):
                await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"bad frame")
                break
    finally:
        for channel in joined:
            await fanout.leave(channel, ws)
    return ws


async def _answer(
    fanout: RoomFanout, ws: web.WebSocketResponse, joined: set[bytes], frame: Any
) -> None:
    op = frame["op"]
    if op == "send":
        room, text = frame["room"], frame["text"]
        if not isinstance(room, str) or not isinstance(text, str):
            raise BadFrame
        message_id = await fanout.publish(room, text)
        await ws.send_str(_compact({"type": "ack", "ref": frame.get("ref"), "id": message_id}))
    elif op == "join":
        room = frame["room"]
        if not isinstance(room, str):
            raise BadFrame
        channel = CHANNEL_PREFIX + room.encode()
        if channel not in joined:
            joined.add(channel)
            await fanout.join(channel, ws)
        await ws.send_str(_compact({"type": "joined", "room": room}))
    elif op == "ping":
        await ws.send_str(PONG)
    else:
        raise BadFrame


def create_app(url: str) -> web.Application:
    app = web.Application()

    async def fanout_context(app: web.Application) -> AsyncIterator[None]:
        fanout = RoomFanout(url)
        await fanout.start()
        app[FANOUT] = fanout
        yield
        await fanout.close()

    app.cleanup_ctx.append(fanout_context)
    app.router.add_get("/ws", websocket)
    return app


def main() -> None:
    port = listen_port()
    web.run_app(create_app(redis_url()), host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
