"""The Redis broker: one PUBLISH per message, one subscriber connection per process.

Each room is the channel `chat:room:<room>`, subscribed while this process has members in it.
The subscriber connection is a `Link` (`service.broker.link`): when it comes back after a
drop, every wanted room is subscribed again and the listeners are told the link was
restored, because whatever was published meanwhile is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from common.redis import connect
from service.broker.base import BrokerUnavailable, EventListener, RoomListener
from service.broker.link import Link

log = logging.getLogger(__name__)

ROOM_PREFIX = "chat:room:"


def subscriber(url: str, password: str | None = None) -> aioredis.Redis:
    """A client for a subscriber link (`url` a redis:// URL). It must not retry behind our
    back: a drop has to surface so that channels are subscribed again and listeners learn
    what may have been missed. Raw bytes: a room message is forwarded as it arrives."""
    return aioredis.Redis.from_url(
        url,
        password=password,
        decode_responses=False,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,  # the connect handshake's reads; the reader passes its own wait
        retry=Retry(NoBackoff(), 0),
    )


class RedisBroker:
    """`Broker` on Redis pub/sub."""

    sharded = False

    def __init__(
        self,
        url: str,
        *,
        event_channels: tuple[str, ...] = (),
        probe_interval: float = 5.0,
        subscribe_timeout: float = 5.0,
        password: str | None = None,
    ) -> None:
        if not event_channels:
            # An event channel keeps the link in subscribed mode, where PING probes are answered.
            raise ValueError("RedisBroker needs at least one event channel")
        self._publisher = connect(url, password=password)
        self._events = event_channels
        self._link = Link(
            lambda: subscriber(url, password),
            self,
            sharded=False,
            fixed=event_channels,
            probe_interval=probe_interval,
            subscribe_timeout=subscribe_timeout,
        )
        self._rooms_listener: RoomListener | None = None
        self._events_listener: EventListener | None = None
        self._closed = False
        self._link_was_up = False
        self.reconnects = 0

    @property
    def healthy(self) -> bool:
        return self._link.connected

    def links(self) -> dict[str, bool]:
        return {self._link.name: self._link.connected}

    @property
    def probes_answered(self) -> int:
        return self._link.probes_answered

    def channel(self, room: str) -> str:
        return ROOM_PREFIX + room

    async def start(self, rooms: RoomListener, events: EventListener, *, wait: float = 5.0) -> None:
        """Starts the subscriber; waits up to `wait` seconds for its first connection, so an
        instance whose Redis is up is ready when it starts serving (and one whose Redis is
        down still starts, not ready, and connects when Redis comes)."""
        self._rooms_listener, self._events_listener = rooms, events
        self._link.start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self.wait_for(lambda: self._link.connected)

    async def close(self) -> None:
        self._closed = True
        await self._link.close()
        await self._publisher.aclose()

    async def subscribe(self, room: str) -> None:
        if self._closed:
            raise BrokerUnavailable("the broker is closed")
        await self._link.subscribe(ROOM_PREFIX + room)

    async def unsubscribe(self, room: str) -> None:
        await self._link.unsubscribe(ROOM_PREFIX + room)

    async def publish(self, room: str, payload: bytes) -> None:
        try:
            await self._publisher.publish(ROOM_PREFIX + room, payload)
        except RedisError as exc:  # also OOM or READONLY answers, not only a lost link
            raise BrokerUnavailable("could not publish") from exc

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Waits until `predicate()` holds, checked at each connect, disconnect and answered
        probe (for start-up and fault tests; bound it with `asyncio.timeout`)."""
        await self._link.wait_for(predicate)

    # -- what the link tells -------------------------------------------------------------------

    def message(self, channel: str, payload: bytes) -> None:
        assert self._rooms_listener is not None
        assert self._events_listener is not None
        if channel.startswith(ROOM_PREFIX):
            self._rooms_listener.room_message(channel[len(ROOM_PREFIX) :], payload)
        else:
            self._events_listener.event(channel, payload)

    def up(self, link: Link, channels: frozenset[str]) -> None:
        if not self._link_was_up:
            self._link_was_up = True
            return
        self.reconnects += 1
        log.info("redis subscriber link restored", extra={"rooms": len(channels)})
        assert self._rooms_listener is not None
        assert self._events_listener is not None
        self._rooms_listener.link_restored()
        self._events_listener.link_restored()

    def lost(self, link: Link) -> None:
        """Nothing to do until it is back (`up`)."""

    def dropped(self, link: Link, channel: str) -> None:
        """Only a cluster ends a subscription on its own."""
