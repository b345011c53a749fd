"""An in-process broker for unit tests: several `MemoryBroker`s on one `MemoryBus` act like
several instances on one Redis."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from service.broker.base import BrokerUnavailable, EventListener, RoomListener


class MemoryBus:
    """The shared medium: which brokers are subscribed to which room."""

    def __init__(self) -> None:
        self.subscribers: defaultdict[str, set[MemoryBroker]] = defaultdict(set)
        self.up = True


class MemoryBroker:
    """A `Broker` whose messages travel through a `MemoryBus`, delivered on the next loop turn."""

    sharded = False

    def __init__(self, bus: MemoryBus | None = None) -> None:
        self._bus = bus or MemoryBus()
        self._listener: RoomListener | None = None

    @property
    def healthy(self) -> bool:
        return self._bus.up

    def links(self) -> dict[str, bool]:
        return {"memory": self._bus.up}

    def channel(self, room: str) -> str:
        return room

    async def start(self, rooms: RoomListener, events: EventListener) -> None:
        self._listener = rooms

    async def close(self) -> None:
        for members in self._bus.subscribers.values():
            members.discard(self)

    async def subscribe(self, room: str) -> None:
        self._check()
        self._bus.subscribers[room].add(self)

    async def unsubscribe(self, room: str) -> None:
        members = self._bus.subscribers.get(room)
        if members is not None:
            members.discard(self)
            if not members:
                del self._bus.subscribers[room]

    async def publish(self, room: str, payload: bytes) -> None:
        self._check()
        loop = asyncio.get_running_loop()
        for broker in tuple(self._bus.subscribers.get(room, ())):
            if broker._listener is not None:
                loop.call_soon(broker._listener.room_message, room, payload)

    def _check(self) -> None:
        if not self._bus.up:
            raise BrokerUnavailable("memory bus is down")
