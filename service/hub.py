"""The local registry: which connections this process holds, whose credentials they hold,
and which rooms they are in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

from service.auth.identity import Identity
from service.broker.base import Broker
from service.connection import Connection


class RoomHub:
    """room -> local members. The broker is subscribed to a room exactly while the room has
    at least one member here: on the first join and until the last leave. Connections are
    also indexed by what revocation events name (`holding`), so an event finds its sockets
    without a scan of every socket."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._rooms: dict[str, set[Connection]] = {}
        self._connections: set[Connection] = set()
        self._holders: dict[tuple[str, str], set[Connection]] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @property
    def connections(self) -> frozenset[Connection]:
        return frozenset(self._connections)

    def rooms(self) -> Iterator[str]:
        return iter(self._rooms)

    def members(self, room: str) -> frozenset[Connection]:
        return frozenset(self._rooms.get(room, ()))

    def holding(self, field: str, value: str) -> frozenset[Connection]:
        """The connections whose identity has `value` in introspection field `field`."""
        return frozenset(self._holders.get((field, value), ()))

    def add(self, connection: Connection) -> None:
        self._connections.add(connection)
        self._index(connection, connection.identity)

    def discard(self, connection: Connection) -> None:
        """Forgets a connection that is in no room (`remove` also leaves its rooms)."""
        if connection in self._connections:
            self._connections.discard(connection)
            self._unindex(connection, connection.identity)

    def reidentify(self, connection: Connection, identity: Identity) -> None:
        """The connection now holds `identity` (a refreshed credential of the same user)."""
        if connection in self._connections:
            self._unindex(connection, connection.identity)
            self._index(connection, identity)
        connection.identity = identity

    def _index(self, connection: Connection, identity: Identity) -> None:
        for field, value in identity.names().items():
            if value is not None:
                self._holders.setdefault((field, value), set()).add(connection)

    def _unindex(self, connection: Connection, identity: Identity) -> None:
        for field, value in identity.names().items():
            if value is None:
                continue
            holders = self._holders.get((field, value))
            if holders is not None:
                holders.discard(connection)
                if not holders:
                    del self._holders[(field, value)]

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
