"""The Redis broker: one PUBLISH per message, one subscriber connection per process.

Each room is the channel `chat:room:<room>`, subscribed while this process has members in it.
The subscriber connection is owned by one task that reads it, probes it with PING when quiet
(so a half-open link is noticed), and on any failure reconnects with capped, jittered
exponential backoff, resubscribes every wanted room and tells the listener the link was
restored, because whatever was published meanwhile is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from common.backoff import Backoff
from common.redis import connect
from service.broker.base import BrokerUnavailable, EventListener, RoomListener

log = logging.getLogger(__name__)

ROOM_PREFIX = "chat:room:"
# What a link torn down under a command raises (redis-py raises AttributeError then, too).
LINK_ERRORS = (RedisError, OSError, AttributeError, TimeoutError, BrokerUnavailable)


class RedisBroker:
    """`Broker` on Redis pub/sub."""

    def __init__(
        self,
        url: str,
        *,
        event_channels: tuple[str, ...] = (),
        probe_interval: float = 5.0,
        subscribe_timeout: float = 5.0,
    ) -> None:
        self._publisher = connect(url)
        # The subscriber must not retry behind our back: a drop has to surface here so that
        # rooms are resubscribed and the listener learns that messages may have been missed.
        self._subscriber = aioredis.Redis.from_url(
            # Raw bytes: a room message is forwarded to the sockets exactly as it arrives.
            url,
            decode_responses=False,
            socket_connect_timeout=2.0,
            retry=Retry(NoBackoff(), 0),
        )
        if not event_channels:
            # An event channel keeps the link in subscribed mode, where PING probes are answered.
            raise ValueError("RedisBroker needs at least one event channel")
        self._events = event_channels
        self._probe_interval = probe_interval
        self._subscribe_timeout = subscribe_timeout
        self._rooms: set[str] = set()
        # (subscribe|unsubscribe, channel) -> resolved when Redis confirms it.
        self._confirmations: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._pubsub: PubSub | None = None
        self._rooms_listener: RoomListener | None = None
        self._events_listener: EventListener | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self._closed = False
        self._state = asyncio.Condition()  # notified on connects, disconnects, probe answers
        self._ever_connected = False
        self._warned = False
        self.reconnects = 0
        self.probes_answered = 0

    @property
    def healthy(self) -> bool:
        return self._connected

    def channel(self, room: str) -> str:
        return ROOM_PREFIX + room

    async def start(self, rooms: RoomListener, events: EventListener, *, wait: float = 5.0) -> None:
        """Starts the subscriber; waits up to `wait` seconds for its first connection, so an
        instance whose Redis is up is ready when it starts serving (and one whose Redis is
        down still starts, not ready, and connects when Redis comes)."""
        self._rooms_listener, self._events_listener = rooms, events
        self._task = asyncio.create_task(self._run(), name="redis-subscriber")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self.wait_for(lambda: self._connected)

    async def close(self) -> None:
        self._closed = True  # from here on (un)subscribe calls are no-ops or refusals
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._publisher.aclose()
        await self._subscriber.aclose()

    async def subscribe(self, room: str) -> None:
        self._rooms.add(room)
        pubsub = self._pubsub
        if pubsub is None or not self._connected or self._closed:
            self._rooms.discard(room)
            raise BrokerUnavailable("not connected to redis")
        try:
            await self._confirmed("subscribe", ROOM_PREFIX + room, pubsub.subscribe)
        except Exception as exc:  # whatever the link did, the room is not subscribed
            self._rooms.discard(room)
            # Redis may still confirm it later; take it back so no memberless room lingers.
            with contextlib.suppress(*LINK_ERRORS):
                await pubsub.unsubscribe(ROOM_PREFIX + room)
            raise BrokerUnavailable("could not subscribe") from exc

    async def unsubscribe(self, room: str) -> None:
        self._rooms.discard(room)
        pubsub = self._pubsub
        if pubsub is not None and self._connected and not self._closed:
            # On any failure (redis-py raises AttributeError when the link is torn down under
            # a command) the room is gone anyway: a reconnect resubscribes only wanted rooms.
            with contextlib.suppress(*LINK_ERRORS):
                await self._confirmed("unsubscribe", ROOM_PREFIX + room, pubsub.unsubscribe)

    async def _confirmed(
        self, kind: str, channel: str, command: Callable[[str], Awaitable[object]]
    ) -> None:
        """Sends (un)subscribe and returns once Redis confirms it, within the timeout."""
        waiter = self._confirmations.get((kind, channel))
        if waiter is None or waiter.done():
            waiter = asyncio.get_running_loop().create_future()
            self._confirmations[(kind, channel)] = waiter
        await command(channel)
        await asyncio.wait_for(asyncio.shield(waiter), self._subscribe_timeout)

    async def publish(self, room: str, payload: bytes) -> None:
        try:
            await self._publisher.publish(ROOM_PREFIX + room, payload)
        except RedisError as exc:  # also OOM or READONLY answers, not only a lost link
            raise BrokerUnavailable("could not publish") from exc

    async def _run(self) -> None:
        backoff = Backoff()
        while True:
            try:
                await self._session(backoff)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._connected or not (self._ever_connected or self._warned):
                    log.warning("redis subscriber link lost", extra={"error": repr(exc)})
                    self._warned = True  # once per outage, not once per attempt
            finally:
                self._connected = False
                await self._notify()
                self._fail_confirmations()
                if self._pubsub is not None:
                    pubsub, self._pubsub = self._pubsub, None
                    await _quietly_close(pubsub)
            await asyncio.sleep(backoff.next())

    async def _session(self, backoff: Backoff) -> None:
        pubsub = self._subscriber.pubsub()
        self._pubsub = pubsub
        rooms = set(self._rooms)
        channels = [*self._events, *(ROOM_PREFIX + room for room in rooms)]
        await pubsub.subscribe(*channels)
        await self._await_confirmations(pubsub, set(channels))
        # Rooms left while the subscriptions were being confirmed are not wanted any more.
        stale = [ROOM_PREFIX + room for room in rooms if room not in self._rooms]
        if stale:
            await pubsub.unsubscribe(*stale)
        self._connected = True
        backoff.reset()
        if self._ever_connected:
            self.reconnects += 1
            log.info("redis subscriber link restored", extra={"rooms": len(self._rooms)})
            assert self._rooms_listener is not None
            assert self._events_listener is not None
            self._rooms_listener.link_restored()
            self._events_listener.link_restored()
        self._ever_connected = True
        await self._notify()
        last_heard = time.monotonic()
        probing = False
        while True:
            message = await pubsub.get_message(timeout=self._probe_interval)
            now = time.monotonic()
            if message is not None:
                last_heard = now
                probing = False
                self._dispatch(message)
                if message["type"] == "pong":
                    await self._notify()
            elif probing and now - last_heard > 2 * self._probe_interval:
                raise ConnectionError("redis subscriber did not answer a probe")
            elif now - last_heard >= self._probe_interval and not probing:
                await pubsub.ping()
                probing = True

    async def _notify(self) -> None:
        async with self._state:
            self._state.notify_all()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Waits until `predicate()` holds, checked at each connect, disconnect and answered
        probe (for start-up and fault tests; bound it with `asyncio.timeout`)."""
        async with self._state:
            await self._state.wait_for(predicate)

    async def _await_confirmations(self, pubsub: PubSub, pending: set[str]) -> None:
        """Returns once Redis confirmed every channel: a link that accepts the connection
        but answers nothing (half-open, frozen) must not count as up."""
        limit = min(self._subscribe_timeout, 3 * self._probe_interval)
        deadline = time.monotonic() + limit
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionError("redis did not confirm the subscriptions")
            message = await pubsub.get_message(timeout=remaining)
            if message is not None:
                if message["type"] == "subscribe":
                    pending.discard(message["channel"].decode())
                self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "pong":  # a probe's answer; it names no channel
            self.probes_answered += 1
            return
        channel = message["channel"].decode()
        if kind == "message":
            assert self._rooms_listener is not None
            assert self._events_listener is not None
            if channel.startswith(ROOM_PREFIX):
                self._rooms_listener.room_message(channel[len(ROOM_PREFIX) :], message["data"])
            else:
                self._events_listener.event(channel, message["data"])
        elif kind in ("subscribe", "unsubscribe"):
            waiter = self._confirmations.pop((kind, channel), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _fail_confirmations(self) -> None:
        for waiter in self._confirmations.values():
            if not waiter.done():
                waiter.set_exception(BrokerUnavailable("redis link lost"))
                waiter.exception()  # retrieved here: the subscriber may have given up already
        self._confirmations.clear()


async def _quietly_close(pubsub: PubSub) -> None:
    # The link is already broken; an error closing it has nothing more to tell.
    with contextlib.suppress(Exception):
        await pubsub.aclose()  # type: ignore[no-untyped-call]
