"""A socket that speaks the native protocol, as a member of rooms."""

from __future__ import annotations

from service.connection import Connection
from service.native import frames
from service.rooms.messages import RoomMessage


class NativeSocket(Connection):
    """A `Connection` whose room messages and gaps go out as native frames. A room message's
    frame is the native one already, so it is written as it came, the same bytes for all."""

    __slots__ = ()

    def deliver(self, message: RoomMessage) -> None:
        self.send(message.frame)

    def replay(self, messages: list[RoomMessage]) -> None:
        self.send_replay([message.frame for message in messages])

    def gap(self, room: str, first: int | None, last: int | None, *, reset: bool) -> None:
        self.send(frames.gap(room, first, last, reset=reset))

    def removed(self, room: str) -> None:
        self.send(frames.encode({"type": "removed", "room": room}))
