"""The sockets this process holds, and whose credentials they hold."""

from __future__ import annotations

from collections.abc import Iterator

from service.auth.identity import Identity
from service.connection import Connection
from service.name_index import NameIndex


class Sockets:
    """Every live socket of this process, indexed by what revocation events name (`holding`),
    so an event finds its sockets without a scan of every socket."""

    def __init__(self) -> None:
        self._connections: set[Connection] = set()
        self._holders: NameIndex[Connection] = NameIndex()

    def __iter__(self) -> Iterator[Connection]:
        return iter(tuple(self._connections))  # a copy: closing one changes the set

    def __len__(self) -> int:
        return len(self._connections)

    def holding(self, field: str, value: str) -> frozenset[Connection]:
        """The connections whose identity has `value` in introspection field `field`."""
        return self._holders.get(field, value)

    def add(self, connection: Connection) -> None:
        self._connections.add(connection)
        self._index(connection, connection.identity)

    def discard(self, connection: Connection) -> None:
        """Forgets a connection (idempotent)."""
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
                self._holders.add(field, value, connection)

    def _unindex(self, connection: Connection, identity: Identity) -> None:
        for field, value in identity.names().items():
            if value is not None:
                self._holders.discard(field, value, connection)
