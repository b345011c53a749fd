"""The local registry: which connections this process holds, and which rooms they are in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

from service.broker.base import Broker
from service.connection import Connection


class RoomHub:
    """room -> local members. The broker is subscribed to a room exactly while the room has
    at least one member here: on the first join and until the last leave."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._rooms: dict[str, set[Connection]] = {}
        self._connections: set[Connection] = set()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @property
    def connections(self) -> frozenset[Connection]:
        return frozenset(self._connections)

    def rooms(self) -> Iterator[str]:
        return iter(self._rooms)

    def members(self, room: str) -> frozenset[Connection]:
        return frozenset(self._rooms.get(room, ()))

    def add(self, connection: Connection) -> None:
        self._connections.add(connection)

    def discard(self, connection: Connection) -> None:
        """Forgets a connection that is in no room (`remove` also leaves its rooms)."""
        self._connections.discard(connection)

    async def remove(self, connection: Connection) -> None:
        self.discard(connection)
        for room in tuple(connection.rooms):
            await self.leave(room, connection)

    @asynccontextmanager
    async def _room_lock(self, room: str) -> AsyncIterator[None]:
        # Joins and leaves of one room are serialised so subscribe/unsubscribe cannot cross;
        # other rooms are not held up by a slow subscription.
        lock, users = self._locks.get(room, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[room] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[room]
            if users == 1:
                del self._locks[room]
            else:
                self._locks[room] = (lock, users - 1)

    async def join(self, room: str, connection: Connection) -> None:
        """Adds a member; raises `BrokerUnavailable` if the room could not be subscribed."""
        async with self._room_lock(room):
            members = self._rooms.get(room)
            if members is None:
                await self._broker.subscribe(room)
                members = self._rooms[room] = set()
            members.add(connection)
            connection.rooms.add(room)

    async def leave(self, room: str, connection: Connection) -> None:
        async with self._room_lock(room):
            connection.rooms.discard(room)
            members = self._rooms.get(room)
            if members is None or connection not in members:
                return
            members.discard(connection)
            if not members:
                del self._rooms[room]
                await self._broker.unsubscribe(room)

    def deliver(self, room: str, frame: bytes) -> None:
        """Hands one encoded frame to every local member: no task, no copy per recipient."""
        for connection in self._rooms.get(room, ()):
            connection.send(frame)
