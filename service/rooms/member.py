"""What the room engine knows of a socket (`Member`), and the values a join deals in."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from typing import Protocol

from service.rooms.messages import RoomMessage


class Member(Protocol):
    """A socket in rooms, whatever protocol it speaks."""

    @property
    def rooms(self) -> Set[str]:
        """The rooms it is in."""

    def entered(self, room: str) -> None:
        """It is now in `room` (the room engine alone says so)."""

    def exited(self, room: str) -> None:
        """It is no longer in `room`."""

    @property
    def user_id(self) -> str:
        """Whose socket it is (a removal names the user)."""

    @property
    def username(self) -> str:
        """That user's name (presence lists it)."""

    def removed(self, room: str) -> None:
        """The member was taken out of `room` (removed, or the room deleted)."""

    def deliver(self, message: RoomMessage) -> None:
        """The room's next message (in a room with history: offset order, each once)."""

    def replay(self, messages: list[RoomMessage]) -> None:
        """What a join with `since` missed, in order, before anything live."""

    def gap(self, room: str, first: int | None, last: int | None, *, reset: bool) -> None:
        """Messages `first`..`last` of `room` are lost to this member (both None: which ones
        is unknown, a room without history; `reset`: the room's history was lost)."""


class NotAllowed(Exception):
    """The user was removed from the room while its join was being served."""


@dataclass(frozen=True)
class Since:
    """Where a client left a room: the last offset it received, of which epoch."""

    offset: int
    epoch: str


@dataclass(frozen=True)
class Joined:
    """What a join found: the room's epoch and offset (None without history) and, for a
    join with `since`, whether nothing was lost."""

    epoch: str | None
    offset: int | None
    recovered: bool | None
