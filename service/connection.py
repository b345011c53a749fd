"""One WebSocket connection: who it is, a bounded outbox drained by one writer, rate limits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Set

from aiohttp import WSMessage, WSMsgType, web

from common.aiohttp_adapter import raw_frames
from service.auth.identity import Identity
from service.errors import (
    RATE_LIMITED,
    SLOW_CONSUMER,
    TOKEN_EXPIRED,
    WRITE_FAILED,
    Disconnect,
)
from service.metrics import ChatMetrics
from service.outgoing import WriteBatch, text_frame
from service.rate_guard import RateGuard, RateLimit

log = logging.getLogger(__name__)


# Below this many bytes waiting in the transport (and held for it this loop turn) a frame is
# taken for the transport; above it the socket is backed up and frames wait in the bounded
# backlog (asyncio's own high-water mark).
WRITE_BUFFER_HIGH = 64 * 1024
TEXT = WSMsgType.TEXT
NO_ROOMS: frozenset[str] = frozenset()
_ENDS = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)  # as aiohttp ends iterating


class Connection:
    """A live socket. `send()` never blocks and never buffers without bound: while the peer
    keeps up, a frame is held for the transport and this loop turn's frames are written
    together, in order, at its end (`service/outgoing.py`); while it is backed up, frames
    wait in a backlog of at most `outbox_limit` drained by one task; past that the peer is
    closed with 1013. Nothing per connection runs while it is idle: no task, no timer but
    expiry."""

    __slots__ = ("_allowance", "_backlog", "_close_timeout", "_closing", "_direct", "_expiry",
                 "_finished", "_flusher", "_guard", "_held", "_held_size", "_metrics",
                 "_outbox_limit", "_rate_limit", "_released", "_rooms", "_transport",
                 "_write_timeout", "_writes", "close_code", "id", "identity", "ws")  # fmt: skip

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        identity: Identity,
        *,
        connection_id: str,
        outbox_limit: int,
        close_timeout: float,
        write_timeout: float = 5.0,
        rate_limit: RateLimit | None = None,
        metrics: ChatMetrics | None = None,
        writes: WriteBatch | None = None,
    ) -> None:
        self.ws = ws
        self._metrics = metrics
        self.id = connection_id
        self.identity = identity
        self._rooms: set[str] | None = None  # made at its first join: none for a socket in none
        self._transport = request.transport
        # The transport for frames we encode (common/aiohttp_adapter); None: the backlog only.
        self._direct = request.transport if raw_frames(ws) else None
        self._writes = WriteBatch() if writes is None else writes
        self._held: list[bytes] = []  # encoded frames for the transport, this loop turn
        self._held_size = 0
        self._backlog: deque[bytes] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._outbox_limit = outbox_limit
        self._close_timeout = close_timeout
        self._write_timeout = write_timeout
        self._expiry: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self._finished: asyncio.Event | None = None
        self._released = False
        self._allowance = 0  # replayed frames waiting in the backlog, over the outbox bound
        self._rate_limit = rate_limit
        self._guard: RateGuard | None = None  # made at the first frame: most sockets listen

    def __aiter__(self) -> Connection:
        return self

    async def __anext__(self) -> WSMessage:
        """The socket's next message (as `async for` over the socket itself). What it holds
        goes out first: aiohttp answers a close from the peer within `receive`, and no frame
        of ours may follow that answer."""
        self.write_pending()
        message = await self.ws.receive()
        if message.type in _ENDS:
            raise StopAsyncIteration
        return message

    def rate_check(self) -> str:
        """Takes one frame from this socket's budget: `RateGuard.ALLOWED`, `LIMITED` (refused)
        or `ABUSIVE` (refused too often lately: the socket is being closed with 1008)."""
        if self._rate_limit is None:
            return RateGuard.ALLOWED
        if self._guard is None:
            self._guard = self._rate_limit.guard()
        verdict = self._guard.check()
        if verdict == RateGuard.ABUSIVE:
            self.close_soon(RATE_LIMITED)
        return verdict

    def frame_seen(self) -> bool:
        """A frame the message loop will not see (a control frame, or a fragment that does
        not end a message) came in; False once the socket is closed for abuse."""
        return self.rate_check() != RateGuard.ABUSIVE

    @property
    def finished(self) -> asyncio.Event:
        """Set once the socket is gone and nothing is held (made on first use: few ask)."""
        if self._finished is None:
            self._finished = asyncio.Event()
            if self._released:
                self._finished.set()
        return self._finished

    @property
    def rooms(self) -> Set[str]:
        """The rooms this socket is in."""
        return NO_ROOMS if self._rooms is None else self._rooms

    def entered(self, room: str) -> None:
        if self._rooms is None:
            self._rooms = set()
        self._rooms.add(room)

    def exited(self, room: str) -> None:
        if self._rooms is not None:
            self._rooms.discard(room)

    @property
    def user_id(self) -> str:
        return self.identity.user_id

    @property
    def username(self) -> str:
        return self.identity.username

    @property
    def closing(self) -> bool:
        return self._closing is not None

    def send_replay(self, frames: list[bytes]) -> None:
        """Send frames a join replays. They do not count against the outbox bound (they are
        bounded by the replay limit instead): a client catching up is not a slow consumer
        for it. Frames sent after them are held to the bound as usual."""
        for frame in frames:
            self.send(frame, replay=True)

    def send(self, frame: bytes, *, replay: bool = False) -> None:
        """Send a frame (UTF-8 JSON, the same bytes object for every recipient)."""
        if self._closing is not None:
            return
        backlog = self._backlog
        if backlog is None:
            # (A transport or socket closed meanwhile is `write_pending`'s to find, once.)
            transport = self._direct
            held = self._held_size
            if (
                transport is not None
                and held + transport.get_write_buffer_size() < WRITE_BUFFER_HIGH
            ):
                encoded = text_frame(frame)
                if not held:  # the first frame this turn
                    self._writes.add(self)
                self._held.append(encoded)
                self._held_size = held + len(encoded)
                return
            self.write_pending()  # what was taken goes out before the backlog
            backlog = self._backlog = deque()
            self._flusher = asyncio.create_task(self._flush(backlog))
        if replay:
            self._allowance += 1
        elif len(backlog) >= self._outbox_limit + self._allowance:
            self.close_soon(SLOW_CONSUMER)
            return
        backlog.append(frame)

    def write_pending(self) -> None:
        """Writes the frames held this turn, in one piece (`WriteBatch` calls it at the turn's
        end; so does whatever must come after them: the backlog, the close frame)."""
        held = self._held
        if not held:
            return
        data = held[0] if len(held) == 1 else b"".join(held)
        held.clear()
        self._held_size = 0
        transport = self._transport
        if transport is None or transport.is_closing() or self.ws.closed:
            self.close_soon(WRITE_FAILED)  # as a write through aiohttp would have failed
            return
        try:
            transport.write(data)
        except (RuntimeError, OSError):  # a transport shut for writing under us
            self.close_soon(WRITE_FAILED)

    async def _flush(self, backlog: deque[bytes]) -> None:
        """Writes the backlog as fast as the peer reads it, then hands back to `send()`."""
        try:
            while backlog:
                # Waits while the peer is backed up; a peer that reads nothing at all for
                # `write_timeout` seconds is a slow consumer, however large the buffers.
                await asyncio.wait_for(
                    self.ws.send_frame(backlog.popleft(), TEXT), self._write_timeout
                )
                if self._allowance:
                    self._allowance -= 1
            self._backlog = None
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self.close_soon(SLOW_CONSUMER)
        except Exception as exc:  # the transport went away under us
            log.debug("writer stopped", extra={"connection": self.id, "error": repr(exc)})
            self.close_soon(WRITE_FAILED)

    def expire_at(self, deadline: float) -> None:
        """Close with 4001 at `deadline` (epoch seconds) unless rescheduled first."""
        if self._expiry is not None:
            self._expiry.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, deadline - time.time())
        self._expiry = loop.call_at(loop.time() + delay, self.close_soon, TOKEN_EXPIRED)

    def close_soon(self, disconnect: Disconnect) -> None:
        """Start closing; safe to call from callbacks and more than once (the first wins)."""
        if self._closing is None:
            self._closing = asyncio.create_task(self.close(disconnect))

    async def close(self, disconnect: Disconnect) -> None:
        if self.close_code is not None:
            return
        self.close_code = disconnect.code
        if self._expiry is not None:
            self._expiry.cancel()
        if disconnect.slow_consumer:
            self._reset_on_close()
            if self._metrics is not None:
                self._metrics.slow_consumer_closes.inc()
        # Flush what was queued before the close frame, within the time allowed.
        closed = False
        try:
            await asyncio.wait_for(self._flush_then_close(disconnect), self._close_timeout)
            closed = True
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        finally:
            if not closed:
                # A peer that does not read cannot receive a close frame either: drop the
                # link. Also when this close is itself cancelled (its waiter gave up): a
                # close that did not finish must never leave the socket and its buffers be.
                self._reset_on_close()
                self._stop_flushing()
                if self._transport is not None:
                    self._transport.abort()

    def _reset_on_close(self) -> None:
        """Make the coming close a reset: a FIN would queue behind everything the peer never
        read, and the kernel would keep that buffer (and the peer its illusion) meanwhile."""
        sock = self._transport.get_extra_info("socket") if self._transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    async def _flush_then_close(self, disconnect: Disconnect) -> None:
        flusher = self._flusher
        if not disconnect.slow_consumer and flusher is not None and not flusher.done():
            await asyncio.shield(flusher)  # a slow consumer's backlog is what we drop
        self._stop_flushing()
        self.write_pending()
        code, reason = self.on_the_wire(disconnect)
        await self.ws.close(code=code, message=reason.encode())

    def on_the_wire(self, disconnect: Disconnect) -> tuple[int, str]:
        """The close code and reason a disconnect is sent as (a protocol with codes of its
        own translates them here; `close_code` keeps ours)."""
        return disconnect.code, disconnect.reason

    def _stop_flushing(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()

    async def wait_closed(self) -> None:
        """Returns once a close that was started has run its course."""
        if self._closing is not None:
            await asyncio.gather(self._closing, return_exceptions=True)

    @property
    def settled(self) -> bool:
        """No close of ours is still under way (`release()` may run at once)."""
        return self._closing is None or self._closing.done()

    async def finish(self) -> None:
        """Release everything once the socket is done; a close in progress completes first,
        so the frames queued before it (and the close frame) still go out."""
        if self._closing is not None and self._closing is not asyncio.current_task():
            await asyncio.gather(self._closing, return_exceptions=True)
        self.release()

    def release(self) -> None:
        """Drops the expiry timer and any backlog, and tells whoever waits on `finished`."""
        if self._expiry is not None:
            self._expiry.cancel()
        self._stop_flushing()
        self._held, self._held_size = [], 0
        self._released = True
        if self._finished is not None:
            self._finished.set()
