"""What holds each name a revocation event can give (a `jti`, a `sid`, a user's `sub`, a
signing key's `kid`): the introspection cache's answers, the process's sockets.

Most names are held by one thing only (a token's `jti`, a session's `sid`, and a user's
`sub` while the user has one socket), and every socket and cached answer is indexed under
three or four names: a set per name would cost about 0.2 KiB each for nothing, and a
`(field, value)` tuple per key another 64 bytes. A name held by one thing maps to it
directly; a set is made only when a second holder arrives, and dropped with the last one.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class NameIndex(Generic[T]):
    """`(field, value)` -> the holders of that name, for holders that are never sets."""

    __slots__ = ("_fields",)

    def __init__(self) -> None:
        self._fields: dict[str, dict[str, T | set[T]]] = {}

    def add(self, field: str, value: str, holder: T) -> None:
        names = self._fields.get(field)
        if names is None:
            names = self._fields[field] = {}
        held = names.get(value)
        if held is None:
            names[value] = holder
        elif isinstance(held, set):
            held.add(holder)
        elif held != holder:
            names[value] = {held, holder}

    def discard(self, field: str, value: str, holder: T) -> None:
        names = self._fields.get(field)
        held = None if names is None else names.get(value)
        if names is None or held is None:
            return
        if isinstance(held, set):
            held.discard(holder)
            if len(held) == 1:
                names[value] = next(iter(held))
            elif not held:
                del names[value]
        elif held == holder:
            del names[value]

    def get(self, field: str, value: str) -> frozenset[T]:
        names = self._fields.get(field)
        held = None if names is None else names.get(value)
        if held is None:
            return frozenset()
        return frozenset(held) if isinstance(held, set) else frozenset((held,))

    def pop(self, field: str, value: str) -> frozenset[T]:
        """The holders of the name, which is forgotten."""
        held = self.get(field, value)
        if held:
            del self._fields[field][value]
        return held

    def clear(self) -> None:
        self._fields.clear()
