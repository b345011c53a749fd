"""A room message as the engine moves it: which room, where it stands in the room's order, and
its frame as published (the native protocol's `message` frame; another protocol re-encodes it
from there, once per message).

What travels on a room's channel: for a room with history, `<epoch> <offset> <frame>`; for a
room without, and for events outside the order (presence), the frame alone (it starts with
`{`, an epoch never does); and control payloads starting with `!` that change who is in the
room: `!removed <user id>` (a member was removed) and `!deleted` (the room was deleted).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RoomMessage:
    """One message of one room. `offset` and `epoch` are None in a room without history."""

    room: str
    epoch: str | None
    offset: int | None
    frame: bytes


def parse_payload(room: str, payload: bytes) -> RoomMessage | None:
    """The message a channel carried; None for a payload of neither shape."""
    if payload[:1] == b"{":
        return RoomMessage(room, None, None, payload)
    epoch, _, rest = payload.partition(b" ")
    offset, _, frame = rest.partition(b" ")
    if not epoch or not offset.isdigit() or frame[:1] != b"{":
        return None
    return RoomMessage(room, epoch.decode(), int(offset), frame)


DELETED = b"!deleted"
_REMOVED = b"!removed "


def removed_payload(user_id: str) -> bytes:
    return _REMOVED + user_id.encode()


def parse_control(payload: bytes) -> str | None:
    """For a control payload, the user removed ('' for all: the room was deleted); None for
    anything else."""
    if payload == DELETED:
        return ""
    if payload.startswith(_REMOVED) and len(payload) > len(_REMOVED):
        return payload[len(_REMOVED) :].decode(errors="replace")
    return None
