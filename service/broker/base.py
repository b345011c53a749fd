"""The broker seam: what the hub needs from whatever carries messages between instances."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from redis.exceptions import RedisError

from common.redis import REDIS_ERRORS


class BrokerUnavailable(Exception):
    """The broker cannot carry messages right now (link down, timeout)."""


# A Redis or broker failure while carrying out a request: the client is told to retry.
UNAVAILABLE: tuple[type[Exception], ...] = (BrokerUnavailable, RedisError, *REDIS_ERRORS)


class RoomListener(Protocol):
    """What a broker hands room messages to (the room hub)."""

    def room_message(self, room: str, payload: bytes) -> None:
        """A message published to `room` by any instance (including this one)."""

    def link_restored(self, rooms: Collection[str] | None = None) -> None:
        """The link came back after a drop: messages to `rooms` (None: every room) may have
        been missed meanwhile."""


class EventListener(Protocol):
    """What a broker hands its event channels' messages to (the node: revocations)."""

    def event(self, channel: str, payload: bytes) -> None:
        """A message on one of the broker's event channels."""

    def link_restored(self) -> None:
        """The link came back after a drop: events may have been missed meanwhile."""


class Broker(Protocol):
    """Publish/subscribe by room.

    `subscribe` returns once the subscription is in force, so a member told "joined" receives
    every message published after that. Delivery is at-most-once: a message published while
    an instance's link is down is not delivered to that instance.
    """

    # Rooms travel on sharded pub/sub (SPUBLISH): a Redis Cluster's, whose room channels
    # share their room's slot. Classic PUBLISH otherwise.
    sharded: bool

    @property
    def healthy(self) -> bool: ...

    def links(self) -> dict[str, bool]:
        """Each subscriber link by name, and whether it is connected (for metrics)."""
        ...

    async def start(self, rooms: RoomListener, events: EventListener) -> None: ...

    def channel(self, room: str) -> str:
        """The channel a room's messages travel on."""
        ...

    async def close(self) -> None: ...

    async def subscribe(self, room: str) -> None: ...

    async def unsubscribe(self, room: str) -> None: ...

    async def publish(self, room: str, payload: bytes) -> None: ...
