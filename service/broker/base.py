"""The broker seam: what the hub needs from whatever carries messages between instances."""

from __future__ import annotations

from typing import Protocol


class BrokerUnavailable(Exception):
    """The broker cannot carry messages right now (link down, timeout)."""


class BrokerListener(Protocol):
    """What a broker calls back into; implemented by the chat node."""

    def room_message(self, room: str, payload: bytes) -> None:
        """A message published to `room` by any instance (including this one)."""

    def event(self, channel: str, payload: bytes) -> None:
        """A message on one of the broker's event channels (e.g. revocations)."""

    def link_restored(self) -> None:
        """The link came back after a drop: messages may have been missed meanwhile."""


class Broker(Protocol):
    """Publish/subscribe by room.

    `subscribe` returns once the subscription is in force, so a member told "joined" receives
    every message published after that. Delivery is at-most-once: a message published while
    an instance's link is down is not delivered to that instance.
    """

    @property
    def healthy(self) -> bool: ...

    async def start(self, listener: BrokerListener) -> None: ...

    async def close(self) -> None: ...

    async def subscribe(self, room: str) -> None: ...

    async def unsubscribe(self, room: str) -> None: ...

    async def publish(self, room: str, payload: bytes) -> None: ...
